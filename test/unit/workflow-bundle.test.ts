import path from 'node:path';
import { loadConfig } from '../../src/config';
import { prebuiltBundlePath } from '../../src/worker';

const valid = {
  META_APP_SECRET: 'secret',
  META_VERIFY_TOKEN: 'tok',
  OPS_API_KEYS: 'ops',
  SEND_API_KEYS: 'send',
  TEMPORAL_ADDRESS: '127.0.0.1:7233',
  MONGODB_URI: 'mongodb://127.0.0.1:27017/',
  GRAPH_API_TOKEN: 'graph',
};

describe('which workflow code the worker runs', () => {
  it('takes WORKFLOW_BUNDLE_PATH when it names a file', () => {
    const config = loadConfig({ ...valid, WORKFLOW_BUNDLE_PATH: __filename });
    expect(config.workflowBundlePath).toBe(__filename);
    expect(prebuiltBundlePath(config)).toBe(__filename);
  });

  it('refuses a WORKFLOW_BUNDLE_PATH that names no file, naming the variable', () => {
    expect(() => loadConfig({ ...valid, WORKFLOW_BUNDLE_PATH: path.join(__dirname, 'no-such-bundle.js') })).toThrow(
      /WORKFLOW_BUNDLE_PATH: no such file/,
    );
  });

  it('bundles the sources when running from source, even if a dist/ bundle exists', () => {
    const config = loadConfig(valid);
    expect(config.workflowBundlePath).toBeUndefined();
    expect(prebuiltBundlePath(config)).toBeUndefined();
  });
});
