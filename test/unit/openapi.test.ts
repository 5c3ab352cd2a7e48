import fs from 'node:fs';
import Ajv2020 from 'ajv/dist/2020';
import { openApiDocument } from '../../src/http/openapi';
import { OPENAPI_FILE, renderCommitted } from '../../tools/openapi';

const ROOT = 'https://coexist-relay.invalid/openapi.json';

describe('the OpenAPI document', () => {
  it('the committed openapi.json is the generated one', () => {
    const committed = fs.readFileSync(OPENAPI_FILE, 'utf8');
    if (committed !== renderCommitted()) {
      throw new Error('openapi.json differs from the document src/http/openapi.ts generates: run npm run openapi');
    }
  });

  it('every schema compiles as JSON Schema 2020-12, every $ref resolves, and the examples are valid', () => {
    const doc = openApiDocument() as { components: { schemas: Record<string, { examples?: unknown[] }> } };
    const ajv = new Ajv2020({ strict: false, validateFormats: false });
    ajv.addSchema({ $id: ROOT, components: doc.components });
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      const validate = ajv.compile({ $ref: `${ROOT}#/components/schemas/${name}` });
      for (const example of schema.examples ?? []) {
        expect({ name, example, valid: validate(example) }).toEqual({ name, example, valid: true });
      }
    }
  });

  it('uses the configured webhook path', () => {
    const doc = openApiDocument({ webhookPath: '/hooks/wa' }) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toContain('/hooks/wa');
    expect(Object.keys(doc.paths)).not.toContain('/webhooks/meta');
  });
});
