#!/usr/bin/env node
// Runs an ONNX model in ONNX Runtime (npm's onnxruntime-node, CPU) over a raw float32 NCHW input file and writes the
// "logits" output as raw float32. Used by test_onnx_export.py; the runtime is found in $DSGQ_ORT_DIR/node_modules.
// usage: ort_run.js MODEL INPUT.f32 N C H W BATCH OUTPUT.f32 [disabled|basic|extended|all]
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [model, input, n_, c_, h_, w_, batch_, output, level = 'all'] = process.argv.slice(2);
  if (!output) {
    console.error('usage: ort_run.js MODEL INPUT.f32 N C H W BATCH OUTPUT.f32 [optimization level]');
    process.exit(2);
  }
  const dir = process.env.DSGQ_ORT_DIR;
  if (!dir) {
    console.error('ort_run.js: DSGQ_ORT_DIR is not set; expected the folder where jobs/setup --tests installed onnxruntime-node');
    process.exit(2);
  }
  const ort = require(path.join(dir, 'node_modules', 'onnxruntime-node'));
  const [n, c, h, w, batch] = [n_, c_, h_, w_, batch_].map(Number);
  const chw = c * h * w;
  const raw = fs.readFileSync(input);
  if (raw.length !== n * chw * 4) {
    console.error(`ort_run.js: ${input} has ${raw.length} bytes; expected ${n}x${c}x${h}x${w} float32 (${n * chw * 4})`);
    process.exit(2);
  }
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
  const session = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: level, intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential'});
  let logits = null, k = 0;
  for (let s = 0; s < n; s += batch) {
    const b = Math.min(batch, n - s);
    const x = new ort.Tensor('float32', data.subarray(s * chw, (s + b) * chw), [b, c, h, w]);
    const out = (await session.run({input: x})).logits;
    if (!logits) {
      k = out.dims[1];
      logits = new Float32Array(n * k);
    }
    logits.set(out.data, s * k);
  }
  fs.writeFileSync(output, Buffer.from(logits.buffer));
  console.log(JSON.stringify({model: path.basename(model), n, classes: k, level}));
}

main().catch((e) => {
  console.error(`ort_run.js: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
