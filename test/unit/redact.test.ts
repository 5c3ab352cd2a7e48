import { createLogger } from '../../src/logger';
import { redactUri } from '../../src/util/redact';

describe('redactUri', () => {
  it('hides user and password of a mongodb:// URI and keeps host, database and options', () => {
    expect(redactUri('mongodb://relay:s3cr%40t@db1.internal:27017/coexist_relay?authSource=admin')).toBe(
      'mongodb://***@db1.internal:27017/coexist_relay?authSource=admin',
    );
  });

  it('hides the credentials of a mongodb+srv:// URI and of a replica-set host list', () => {
    expect(redactUri('mongodb+srv://u:p@cluster0.example.net/db')).toBe('mongodb+srv://***@cluster0.example.net/db');
    expect(redactUri('mongodb://u:p@h1:27017,h2:27017/db?replicaSet=rs0')).toBe(
      'mongodb://***@h1:27017,h2:27017/db?replicaSet=rs0',
    );
  });

  it('hides a user name without a password, and a password holding an unescaped @', () => {
    expect(redactUri('mongodb://alice@host/')).toBe('mongodb://***@host/');
    expect(redactUri('mongodb://alice:pa@ss@host/db')).toBe('mongodb://***@host/db');
  });

  it('redacts every URI inside a longer message, such as an error quoting the connection string', () => {
    const message = 'cannot reach MongoDB at mongodb://a:b@h1/ (tried mongodb://a:b@h2/): timeout';
    expect(redactUri(message)).toBe('cannot reach MongoDB at mongodb://***@h1/ (tried mongodb://***@h2/): timeout');
    expect(redactUri(message)).not.toContain('a:b');
  });

  it('leaves a URI without credentials and text without URIs unchanged', () => {
    expect(redactUri('mongodb://127.0.0.1:27018/')).toBe('mongodb://127.0.0.1:27018/');
    expect(redactUri('http://127.0.0.1:3000/healthz?x=a@b')).toBe('http://127.0.0.1:3000/healthz?x=a@b');
    expect(redactUri('mail ops@example.com')).toBe('mail ops@example.com');
  });
});

describe('the logger', () => {
  it('censors secret fields wherever a log object carries them (top level or one level down)', () => {
    const lines: string[] = [];
    const logger = createLogger('info', 'test', { write: (l: string) => void lines.push(l) });
    logger.info(
      {
        authorization: 'Bearer k1',
        token: 't1',
        headers: { authorization: 'Bearer k2' },
        mongo: { uri: 'mongodb://u:p@h/' },
      },
      'hello',
    );
    const text = lines.join('');
    for (const secret of ['k1', 'k2', 't1', 'u:p']) expect(text).not.toContain(secret);
    expect(text).toContain('[redacted]');
  });
});
