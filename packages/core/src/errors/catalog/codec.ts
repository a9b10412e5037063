import type { Catalog } from '../info.js';

/** Error codes of the wire codec (safetensors models and frames). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const CODEC_CODES = {
  E_CODEC_DER: {
    meaning: 'Bytes meant to be DER (a certificate, CRL or vendor structure) break X.690\'s distinguished rules: truncated, indefinite or non-minimal lengths, multi-byte tags, trailing bytes, or a malformed OID, INTEGER, BOOLEAN or time.',
    action: 'The certificate or evidence is damaged or was re-encoded by a tool that does not write DER: use the original bytes as issued.',
  },
  E_CODEC_TRUNCATED: {
    meaning: 'The data ended before the length it declares.',
    action: 'The sender or the file is broken or was cut short: resend or re-create it; do not retry with the same bytes.',
  },
  E_CODEC_TOO_LARGE: {
    meaning: 'The data declares a size larger than the configured limit.',
    action: 'If the model is legitimately this large, raise the limit (maxBytes / maxHeaderBytes) on the receiving side; otherwise treat the sender as faulty.',
  },
  E_CODEC_HEADER_JSON: {
    meaning: 'The header is not valid UTF-8 JSON of the expected shape.',
    action: 'The sender is not speaking this format or the bytes were corrupted: check versions on both sides.',
  },
  E_CODEC_HEADER_SCHEMA: {
    meaning: 'The header is valid JSON but does not match the schema for this message.',
    action: 'Check that both sides run compatible FLARE-TS versions; unknown or missing fields are refused on purpose.',
  },
  E_CODEC_FORBIDDEN_KEY: {
    meaning: 'A JSON key such as __proto__, constructor or prototype appears in wire data.',
    action: 'Treat the sender as hostile or broken: such keys are never accepted from the wire.',
  },
  E_CODEC_DUPLICATE: {
    meaning: 'A name appears twice in one JSON object (for example a tensor named twice).',
    action: 'Fix the writer: every tensor and header key must be unique.',
  },
  E_CODEC_DTYPE: {
    meaning: 'A tensor declares a dtype this codec does not support.',
    action: 'Use one of F32, F64, I32, I64, U8, BOOL, F16, BF16 (convert the model before sending).',
  },
  E_CODEC_SHAPE: {
    meaning: 'A tensor shape is not a list of non-negative safe integers within the limits.',
    action: 'Fix the writer; shapes must be small non-negative integers whose product fits the data.',
  },
  E_CODEC_BOUNDS: {
    meaning: 'A tensor\'s data offsets point outside the data section.',
    action: 'The file is corrupt or forged: re-create it.',
  },
  E_CODEC_LAYOUT: {
    meaning: 'Tensor data ranges overlap, leave holes or do not cover the data section exactly.',
    action: 'The file is corrupt or forged: re-create it with a conforming safetensors writer.',
  },
  E_CODEC_SIZE_MISMATCH: {
    meaning: 'A tensor\'s byte range does not equal its shape times its dtype size.',
    action: 'The file is corrupt or forged: re-create it.',
  },
  E_CODEC_TOO_MANY_TENSORS: {
    meaning: 'The model declares more tensors than the configured limit.',
    action: 'Raise maxTensors on the receiving side if the model really has that many tensors.',
  },
  E_CODEC_METADATA: {
    meaning: 'The __metadata__ section is not a map of strings, or its FLARE-TS fields are malformed.',
    action: 'Fix the writer: __metadata__ must map strings to strings.',
  },
  E_CODEC_MAGIC: {
    meaning: 'The frame does not start with the FLARE-TS magic bytes.',
    action: 'The peer is not a FLARE-TS endpoint or the stream is out of sync: check the address and port.',
  },
  E_CODEC_VERSION: {
    meaning: 'The frame uses a wire version this build does not speak.',
    action: 'Upgrade the older side so both speak the same wire version.',
  },
} as const satisfies Catalog;
