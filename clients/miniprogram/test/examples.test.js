// The mini-program in the README type-checks against the SDK's .d.ts and WeChat's own
// typings (miniprogram-api-typings), and `wx` is a Platform as WeChat types it.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const PACKAGE = path.resolve(__dirname, '..')
const README = path.resolve(PACKAGE, '../../README.md')

/** The ```ts blocks of the README's SDK section that start with `// some/file.ts`. */
function exampleFiles() {
  const text = fs.readFileSync(README, 'utf8')
  const start = text.indexOf('\n## Mini-program SDK\n')
  const section = text.slice(start, text.indexOf('\n## ', start + 5))
  const files = {}
  for (const [, code] of section.matchAll(/```ts\n([\s\S]*?)```/g)) {
    const name = /^\/\/ ([\w/.-]+\.ts)\b/.exec(code)
    if (name) files[name[1]] = code
  }
  return files
}

test("the README's app.ts and pages type-check against the SDK and WeChat's typings", () => {
  const files = exampleFiles()
  assert.deepEqual(Object.keys(files).sort(), ['api.ts', 'app.ts', 'pages/orders/orders.ts', 'pages/phone/phone.ts'])
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxgate-example-'))
  try {
    files['platform-check.ts'] = [
      "import { Platform, createClient } from 'wxgate-miniprogram'",
      'const platform: Platform = wx',
      "createClient({ baseURL: 'https://api.example.com', platform })",
      '',
    ].join('\n')
    for (const [name, code] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
      fs.writeFileSync(path.join(dir, name), code)
    }
    const tsconfig = {
      compilerOptions: {
        target: 'ES2017',
        lib: ['ES2017'],
        module: 'commonjs',
        strict: true,
        noEmit: true,
        baseUrl: '.',
        paths: { 'wxgate-miniprogram': [path.join(PACKAGE, 'dist/index.d.ts')] },
        typeRoots: [path.join(PACKAGE, 'node_modules')],
        types: ['miniprogram-api-typings'],
      },
      include: ['**/*.ts'],
    }
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig))
    const tsc = require.resolve('typescript/bin/tsc')
    const run = spawnSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8' })
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
