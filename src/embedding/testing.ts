/** Helpers for tests and the offline demo: a deterministic tiny model in the hub export layout. */
export { writeTinyModel, TINY_MODEL_ID, type TinyModelOptions } from '../../scripts/models/tiny-model.js';
export { writeSiglipVisionModel, B16_MODEL_ID, type SiglipVisionOptions } from '../../scripts/models/siglip-vision.js';
