/** `npm run openapi`: writes `openapi.json` at the repository root from `src/http/openapi.ts`. */
import fs from 'node:fs';
import path from 'node:path';
import { renderOpenApi } from '../src/http/openapi';

const file = path.resolve(__dirname, '..', 'openapi.json');
fs.writeFileSync(file, renderOpenApi());
process.stderr.write(`wrote ${path.relative(process.cwd(), file) || file}\n`);
