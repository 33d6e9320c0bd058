#!/usr/bin/env node
// Sends telemetry the way a real device does: with the Azure IoT device SDK
// for Node.js, from a device connection string, over MQTT on 8883 or MQTT
// over WebSockets on 443 of the hub's name. The certificate is checked
// against the CA file given, for the hub's name, like a device in the field.
//
// usage: node send.js --connection-string CS --transport mqtt|mqttws
//                     --ca CA.pem [--count N] [--interval MS] [--timeout S]
//                     [--retry none|sdk]
//
// --retry none (the default) makes the first failure final, so a test sees
// the real error at once; --retry sdk keeps the SDK's own policy
// (exponential back-off with jitter), as a device in the field runs.
//
// The connection string may also come from the environment as
// DEVICE_CONNECTION_STRING (or IotHubDeviceConnectionString). Prints one
// JSON summary line on stdout and exits 0 only when every message was
// acknowledged by the hub (PUBACK) before the overall timeout.
'use strict';

const fs = require('fs');
const { NoRetry } = require('azure-iot-common');
const { Client, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');

function usage(msg) {
  if (msg) console.error('send.js: ' + msg);
  console.error('usage: node send.js --connection-string CS '
    + '--transport mqtt|mqttws --ca CA.pem [--count N] [--interval MS] '
    + '[--timeout S] [--retry none|sdk]');
  process.exit(64);
}

function parseArgs(argv) {
  const opts = {
    connectionString: process.env.DEVICE_CONNECTION_STRING
      || process.env.IotHubDeviceConnectionString || '',
    transport: 'mqtt',
    ca: '',
    count: 5,
    interval: 0,
    timeout: 30,
    retry: 'none',
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const val = argv[i + 1];
    if (key === '-h' || key === '--help') usage();
    if (val === undefined) usage('missing value for ' + key);
    switch (key) {
      case '--connection-string': opts.connectionString = val; break;
      case '--transport': opts.transport = val.toLowerCase(); break;
      case '--ca': opts.ca = val; break;
      case '--count': opts.count = Number(val); break;
      case '--interval': opts.interval = Number(val); break;
      case '--timeout': opts.timeout = Number(val); break;
      case '--retry': opts.retry = val; break;
      default: usage('unknown argument ' + key);
    }
    i++;
  }
  if (!opts.connectionString) usage('no connection string');
  if (!['mqtt', 'mqttws'].includes(opts.transport)) {
    usage('transport must be mqtt or mqttws');
  }
  if (!opts.ca) usage('no --ca file');
  if (!['none', 'sdk'].includes(opts.retry)) {
    usage('retry must be none or sdk');
  }
  for (const k of ['count', 'interval', 'timeout']) {
    if (!Number.isInteger(opts[k]) || opts[k] < 0) {
      usage('--' + k + ' must be a whole number');
    }
  }
  return opts;
}

function connectionField(cs, name) {
  for (const part of cs.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).toLowerCase() === name.toLowerCase()) {
      return part.slice(eq + 1);
    }
  }
  return '';
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const summary = {
    transport: opts.transport,
    host: connectionField(opts.connectionString, 'HostName'),
    port: opts.transport === 'mqtt' ? 8883 : 443,
    deviceId: decodeURIComponent(
      connectionField(opts.connectionString, 'DeviceId')),
    requested: opts.count,
    sent: 0,
    failed: 0,
    connect_ms: null,
    elapsed_ms: null,
    ok: false,
    error: null,
  };
  let done = false;
  const finish = (code) => {
    if (done) return;
    done = true;
    summary.elapsed_ms = Date.now() - started;
    summary.ok = code === 0;
    process.stdout.write(JSON.stringify(summary) + '\n', () => {
      process.exit(code);
    });
  };

  // The overall deadline: a device that hangs is a failure, not a wait.
  setTimeout(() => {
    summary.error = summary.error || 'timeout after ' + opts.timeout + ' s';
    finish(3);
  }, opts.timeout * 1000).unref();

  const ca = fs.readFileSync(opts.ca, 'utf8');
  const transport = opts.transport === 'mqtt' ? Mqtt : MqttWs;
  const client = Client.fromConnectionString(opts.connectionString,
    transport);
  if (opts.retry === 'none') client.setRetryPolicy(new NoRetry());
  client.on('error', (err) => {
    summary.error = 'client error: ' + (err && err.message);
  });

  try {
    await client.setOptions({ ca });
    await client.open();
    summary.connect_ms = Date.now() - started;
    for (let seq = 1; seq <= opts.count; seq++) {
      const msg = new Message(JSON.stringify({
        deviceId: summary.deviceId,
        seq,
        ts: new Date().toISOString(),
      }));
      msg.contentType = 'application/json';
      msg.contentEncoding = 'utf-8';
      try {
        await client.sendEvent(msg);
        summary.sent++;
      } catch (err) {
        summary.failed++;
        summary.error = 'send ' + seq + ': ' + (err && err.message);
      }
      if (opts.interval && seq < opts.count) await sleep(opts.interval);
    }
    await client.close();
  } catch (err) {
    const message = err && (err.message || String(err));
    const cause = err && err.transportError
      && (err.transportError.message || String(err.transportError));
    summary.error = cause && !message.includes(cause)
      ? message + ' (' + cause + ')' : message;
    finish(2);
    return;
  }
  finish(summary.sent === opts.count && summary.failed === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error('send.js: ' + (err && err.stack));
  process.exit(2);
});
