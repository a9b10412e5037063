#!/usr/bin/env node
// Measures node:crypto against tweetnacl for the primitives the login and the message MAC use, on this
// machine, in one run (the README records the figures). Run: node packages/auth/scripts/measure-crypto.mjs
import { createHash, diffieHellman, generateKeyPairSync, sign, verify } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import nacl from 'tweetnacl';

const rate = (fn, minMs = 1000) => {
  for (let i = 0; i < 3; i++) fn();
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs) {
    fn();
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
};

const msg = new Uint8Array(1024).fill(7);

// X25519: one ephemeral key pair and one shared secret per side of a login (RFC 7748).
const peer = generateKeyPairSync('x25519');
const naclPeer = nacl.box.keyPair();
const x25519Node = rate(() => {
  const { privateKey } = generateKeyPairSync('x25519');
  diffieHellman({ privateKey, publicKey: peer.publicKey });
});
const x25519Nacl = rate(() => {
  const kp = nacl.box.keyPair();
  nacl.scalarMult(kp.secretKey, naclPeer.publicKey);
});

// Ed25519 sign + verify of 1 KiB (the signature scheme an Ed25519 kit key uses; RFC 8032).
const ed = generateKeyPairSync('ed25519');
const edNacl = nacl.sign.keyPair();
const edNode = rate(() => verify(null, msg, ed.publicKey, sign(null, msg, ed.privateKey)));
const edNaclRate = rate(() => nacl.sign.detached.verify(msg, nacl.sign.detached(msg, edNacl.secretKey), edNacl.publicKey));

// SHA-512 of 1 KiB (tweetnacl has no SHA-256 or HMAC; its only hash is SHA-512).
const shaNode = rate(() => createHash('sha512').update(msg).digest());
const shaNacl = rate(() => nacl.hash(msg));

const row = (label, node, tn) => console.log(`${label.padEnd(44)} node:crypto ${node.toFixed(0).padStart(8)}/s   tweetnacl ${tn.toFixed(0).padStart(7)}/s   ${(node / tn).toFixed(1)}x`);
console.log(`Node ${process.version}, ${process.platform}-${process.arch}`);
row('X25519 key pair + shared secret', x25519Node, x25519Nacl);
row('Ed25519 sign + verify, 1 KiB', edNode, edNaclRate);
row('SHA-512, 1 KiB', shaNode, shaNacl);
