// Loaded with `node --require ./preload-connect.js send.js ...` on machines
// where a hosts file cannot point the hub's name at the gateway (no root, no
// network namespace). It changes where TLS connections go while keeping
// everything the device sends and checks: the SNI, the certificate name
// check and the HTTP Host header still carry the hub's name.
//
// HG_CONNECT_TO maps the port the device dials to the address to reach:
//   HG_CONNECT_TO="8883=127.0.0.1:40001,443=127.0.0.1:40002"
// A port not in the list connects unchanged. Every rewrite is reported on
// stderr when HG_CONNECT_TO_DEBUG is set.
'use strict';

const net = require('net');
const tls = require('tls');

function parseMap(text) {
  const map = new Map();
  for (const item of (text || '').split(',')) {
    const entry = item.trim();
    if (!entry) continue;
    const m = /^(\d+)=(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry);
    if (!m) {
      throw new Error('HG_CONNECT_TO: bad entry "' + entry
        + '", want PORT=HOST:PORT');
    }
    map.set(Number(m[1]), {
      host: m[2].replace(/^\[|\]$/g, ''),
      port: Number(m[3]),
    });
  }
  return map;
}

// tls.connect(options[, cb]), tls.connect(port[, host][, options][, cb])
// and tls.connect(path[, options][, cb]) all end up as one options object.
function normalize(args) {
  let options = {};
  let cb;
  const rest = Array.from(args);
  if (typeof rest[rest.length - 1] === 'function') cb = rest.pop();
  if (rest[0] !== null && typeof rest[0] === 'object') {
    options = Object.assign({}, rest[0]);
  } else {
    if (typeof rest[0] === 'number' || /^\d+$/.test(String(rest[0]))) {
      options.port = Number(rest.shift());
      if (typeof rest[0] === 'string') options.host = rest.shift();
    } else if (typeof rest[0] === 'string') {
      options.path = rest.shift();
    }
    if (rest[0] && typeof rest[0] === 'object') {
      options = Object.assign({}, rest[0], options);
    }
  }
  return { options, cb };
}

const connectTo = parseMap(process.env.HG_CONNECT_TO);
const debug = Boolean(process.env.HG_CONNECT_TO_DEBUG);
const originalConnect = tls.connect;

tls.connect = function connectRedirected(...args) {
  const { options, cb } = normalize(args);
  const port = Number(options.port || 443);
  const target = connectTo.get(port);
  if (!target || options.socket || options.path) {
    return originalConnect.apply(tls, args);
  }
  const name = options.servername || options.host || 'localhost';
  if (options.servername === undefined && net.isIP(name) === 0) {
    options.servername = name;
  }
  // checkServerIdentity gets the hostname Node passes: keep the hub's name.
  const check = options.checkServerIdentity || tls.checkServerIdentity;
  options.checkServerIdentity = (host, cert) => check(name, cert);
  if (debug) {
    process.stderr.write('preload-connect: ' + name + ':' + port + ' -> '
      + target.host + ':' + target.port + ' (sni ' + options.servername
      + ')\n');
  }
  options.host = target.host;
  options.port = target.port;
  delete options.hostname;
  return cb ? originalConnect.call(tls, options, cb)
    : originalConnect.call(tls, options);
};
