// A gRPC-Web client in the grpc-web package's default mode (grpcwebtext:
// application/grpc-web-text, base64 bodies), run by Node with the xhr2
// XMLHttpRequest polyfill. Messages are encoded and decoded with protobufjs
// from the project's .proto file (there is no protoc-gen-grpc-web here, so
// the method descriptors are built by hand).
//
// usage: node client.js <gateway base URL> <counter.proto> <token> <item id>
// Prints one JSON object with the outcome of every call.
'use strict';

global.XMLHttpRequest = require('xhr2');
const grpcWeb = require('grpc-web');
const protobuf = require('protobufjs');

const [base, protoPath, token, itemId] = process.argv.slice(2);
const root = protobuf.loadSync(protoPath);
const T = (name) => root.lookupType('highgopress.counter.v1.' + name);

function method(service, name, req, res, kind) {
  const Req = T(req);
  const Res = T(res);
  return new grpcWeb.MethodDescriptor(
    '/highgopress.counter.v1.' + service + '/' + name,
    kind || grpcWeb.MethodType.UNARY,
    Object, Object,
    (msg) => Req.encode(Req.fromObject(msg)).finish(),
    (bytes) => Res.toObject(Res.decode(bytes), { longs: String, defaults: true }),
  );
}

// The default format is 'text' (grpcwebtext); set it explicitly anyway so
// the test cannot silently drift to binary mode.
const client = new grpcWeb.GrpcWebClientBase({ format: 'text' });

function unary(desc, msg, md) {
  return new Promise((resolve) => {
    client.rpcCall(base + desc.getName(), msg, md || {}, desc, (err, res) => {
      if (err) resolve({ code: err.code, message: err.message });
      else resolve({ code: 0, response: res });
    });
  });
}

function streamed(desc, msg, md) {
  return new Promise((resolve) => {
    const out = { data: [], status: null, code: null, ended: false };
    const stream = client.serverStreaming(base + desc.getName(), msg, md || {}, desc);
    stream.on('data', (res) => out.data.push(res));
    stream.on('status', (st) => { out.status = st.code; });
    stream.on('error', (err) => { out.code = err.code; out.message = err.message; resolve(out); });
    stream.on('end', () => { out.ended = true; resolve(out); });
  });
}

async function main() {
  const auth = { authorization: 'Bearer ' + token };
  const item = { namespace: 'article', id: itemId };
  const like = method('CounterService', 'Like', 'LikeRequest', 'LikeResponse');
  const getCounts = method('CounterService', 'GetCounts', 'GetCountsRequest', 'GetCountsResponse');
  const getCountsStream = method('CounterService', 'GetCounts', 'GetCountsRequest', 'GetCountsResponse',
    grpcWeb.MethodType.SERVER_STREAMING);
  const unknown = method('CounterService', 'Reset', 'LikeRequest', 'LikeResponse');
  // A request of 300 items exercises a body larger than one read and a
  // response that is flushed in several chunks.
  const many = [];
  for (let i = 0; i < 300; i++) many.push({ namespace: 'article', id: itemId + '-' + i });

  const out = {};
  out.like = await unary(like, { item }, auth);
  out.likeAgain = await unary(like, { item }, auth);
  out.counts = await unary(getCounts, { items: [item] }, auth);
  out.countsMany = await unary(getCounts, { items: many }, {});
  out.stream = await streamed(getCountsStream, { items: [item] }, auth);
  out.noToken = await unary(like, { item }, {});
  out.badToken = await unary(getCounts, { items: [item] }, { authorization: 'Bearer not.a.token' });
  out.invalid = await unary(like, { item: { namespace: 'Bad Namespace!', id: 'x' } }, auth);
  out.unknown = await unary(unknown, { item }, auth);
  if (out.countsMany.response) {
    out.countsMany = { code: out.countsMany.code, items: out.countsMany.response.counts.length };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});
