'use strict';
// drop: multipart uploads to DATA_DIR/files/<id>, metadata in Redis. See README.md.

const crypto = require('crypto');
const fs = require('fs');
const fsp = require('fs/promises');
const http = require('http');
const os = require('os');
const path = require('path');

const busboy = require('busboy');
const { createClient } = require('redis');

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`environment variable ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const SERVER = os.hostname();
const HEALTH_PATH = '/healthz';
const PORT = Number(required('PORT'));
const DATA_DIR = required('DATA_DIR');
const FILES_DIR = path.join(DATA_DIR, 'files');
const ALLOWED_HOSTS = (process.env.ALLOWED_HOSTS || '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
const MAX_BYTES = Number(process.env.DROP_MAX_BYTES || 64 * 1024 * 1024);

const redis = createClient({ url: required('REDIS_URL'), socket: { connectTimeout: 5000 } });
// Without a listener a lost connection would end the process; node-redis reconnects by itself.
redis.on('error', (err) => console.error(`redis: ${err.message}`));

function answer(res, status, data) {
  const body = JSON.stringify({ ...data, server: SERVER });
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function fsyncDir(dir) {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// Stream the multipart field `file` into a temp file next to its final place; resolve with
// {tmp, size, sha256, name, type} once the temp file is fsynced.
function receiveFile(req) {
  return new Promise((resolve, reject) => {
    let parser;
    try {
      parser = busboy({ headers: req.headers, limits: { files: 1, fileSize: MAX_BYTES } });
    } catch (err) {
      reject(Object.assign(new Error(`not a multipart upload: ${err.message}`), { status: 400 }));
      return;
    }
    let pending = null;
    parser.on('file', (field, stream, info) => {
      if (field !== 'file' || pending) {
        stream.resume();
        return;
      }
      const tmp = path.join(FILES_DIR, `.upload-${crypto.randomBytes(8).toString('hex')}.tmp`);
      const hash = crypto.createHash('sha256');
      let size = 0;
      let truncated = false;
      stream.on('data', (chunk) => { hash.update(chunk); size += chunk.length; });
      stream.on('limit', () => { truncated = true; });
      pending = new Promise((done, fail) => {
        const out = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o640 });
        out.on('error', fail);
        stream.pipe(out);
        out.on('finish', () => {
          fs.open(tmp, 'r+', (err, fd) => {
            if (err) return fail(err);
            fs.fsync(fd, (syncErr) => fs.close(fd, () => (syncErr ? fail(syncErr) : done())));
          });
        });
      }).then(() => {
        if (truncated) {
          throw Object.assign(new Error(`file larger than ${MAX_BYTES} bytes`), { status: 413 });
        }
        return { tmp, size, sha256: hash.digest('hex'), name: info.filename || '', type: info.mimeType || '' };
      }).catch(async (err) => {
        await fsp.rm(tmp, { force: true });
        throw err;
      });
    });
    parser.on('error', (err) => reject(Object.assign(err, { status: 400 })));
    parser.on('close', () => {
      if (!pending) {
        reject(Object.assign(new Error('multipart file field `file` is required'), { status: 400 }));
      } else {
        pending.then(resolve, reject);
      }
    });
    req.pipe(parser);
  });
}

async function createFile(req, res) {
  const received = await receiveFile(req);
  const id = await redis.incr('drop:next_id');
  const final = path.join(FILES_DIR, String(id));
  await fsp.rename(received.tmp, final);
  await fsyncDir(FILES_DIR);
  // With appendfsync always, EXEC is answered only after the AOF is fsynced.
  await redis.multi()
    .hSet(`drop:file:${id}`, {
      name: received.name, type: received.type, size: String(received.size),
      sha256: received.sha256, created_at: new Date().toISOString(), server: SERVER,
    })
    .zAdd('drop:files', { score: id, value: String(id) })
    .exec();
  answer(res, 200, { id, size: received.size, sha256: received.sha256 });
}

async function readFile(res, id) {
  const meta = await redis.hGetAll(`drop:file:${id}`);
  if (!meta || !meta.sha256) {
    answer(res, 404, { error: `file ${id} not found` });
    return;
  }
  let handle;
  try {
    handle = await fsp.open(path.join(FILES_DIR, String(id)), 'r');
  } catch (err) {
    if (err.code === 'ENOENT') {
      answer(res, 500, { error: `the content of file ${id} is missing` });
      return;
    }
    throw err;
  }
  const { size } = await handle.stat();
  res.writeHead(200, {
    'Content-Type': meta.type || 'application/octet-stream',
    'Content-Length': size,
    'X-Served-By': SERVER,
    'X-Content-SHA256': meta.sha256,
  });
  const stream = handle.createReadStream();
  await new Promise((resolve, reject) => {
    stream.on('error', reject);
    res.on('finish', resolve);
    res.on('close', resolve);
    stream.pipe(res);
  });
}

async function listFiles(res) {
  const ids = (await redis.zRange('drop:files', 0, -1)).map(Number);
  answer(res, 200, { count: ids.length, ids });
}

async function health(res) {
  try {
    const pong = await Promise.race([
      redis.ping(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 2000)),
    ]);
    answer(res, pong === 'PONG' ? 200 : 503, { status: pong === 'PONG' ? 'ok' : 'error' });
  } catch (err) {
    answer(res, 503, { status: 'error', error: `redis: ${err.message}` });
  }
}

async function route(req, res) {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === HEALTH_PATH && req.method === 'GET') return health(res);
  // Health checks may come by address; everything else must name one of the env's domains.
  const host = (req.headers.host || '').replace(/:\d+$/, '').toLowerCase();
  if (!ALLOWED_HOSTS.includes(host)) return answer(res, 400, { error: `host '${host}' is not in ALLOWED_HOSTS` });
  if (url.pathname === '/files' && req.method === 'POST') return createFile(req, res);
  if (url.pathname === '/files' && req.method === 'GET') return listFiles(res);
  const match = /^\/files\/(\d+)$/.exec(url.pathname);
  if (match && req.method === 'GET') return readFile(res, Number(match[1]));
  return answer(res, 404, { error: `no route for ${req.method} ${url.pathname}` });
}

const server = http.createServer((req, res) => {
  route(req, res).catch((err) => {
    if (!err.status) console.error(err);
    req.resume();
    if (!res.headersSent) answer(res, err.status || 500, { error: err.message });
    else res.destroy();
  });
});

async function main() {
  await fsp.mkdir(FILES_DIR, { recursive: true });
  await redis.connect();
  server.listen(PORT, '127.0.0.1', () => console.log(`drop listening on 127.0.0.1:${PORT}`));
}

function stop() {
  // Finish the requests in hand, then leave. Node 18 keeps idle keep-alive connections (the
  // proxy's) open through close(), so those are closed here, or the stop would wait for them.
  server.close(() => redis.quit().finally(() => process.exit(0)));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 10000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

main().catch((err) => {
  console.error(`drop cannot start: ${err.message}`);
  process.exit(1);
});
