// A language model for the browser tests: an OpenAI-compatible
// `POST /v1/chat/completions` that streams its answer in small pieces,
// so the page can be seen rendering Markdown and stopping a reply half-way.
// What it answers depends on the last thing the user said:
//   "markdown" — a reply with a list, emphasis, code, a link and raw HTML
//   "story"    — "word " every 100 ms until the caller hangs up
//   anything else — "You said: …"
// `GET /stats` tells how many answers were hung up on before their end.
import { createServer } from 'node:http';

export const MARKDOWN = [
  'Here is **how** to start:',
  '',
  '1. Install it with `cargo install voxgate`',
  '2. Read [the guide](https://example.com/guide)',
  '',
  '```sh',
  'voxgate serve',
  '```',
  '',
  'Raw HTML stays text: <img src=x onerror="window.pwned=1">',
].join('\n');

const stats = { answers: 0, hungUp: 0 };

function chunk(text) {
  return `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: text } }] })}\n\n`;
}

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', () => {
    const asked = JSON.parse(body);
    const said = asked.messages.filter((m) => m.role === 'user').pop()?.content || '';
    stats.answers += 1;
    let pieces;
    let endless = false;
    if (/markdown/i.test(said)) pieces = MARKDOWN.match(/\S+\s*|\s+/g);
    else if (/story/i.test(said)) { pieces = ['Once upon a time, ']; endless = true; } else pieces = [`You said: ${said}.`];
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let finished = false;
    res.on('close', () => { if (!finished) stats.hungUp += 1; });
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed) { clearInterval(timer); return; }
      if (i < pieces.length) res.write(chunk(pieces[i++]));
      else if (endless) res.write(chunk('word '));
      else {
        clearInterval(timer);
        finished = true;
        res.end('data: [DONE]\n\n');
      }
    }, endless ? 100 : 30);
  });
});

server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`model listening on ${server.address().port}`);
});
