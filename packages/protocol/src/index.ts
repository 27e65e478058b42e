export * from './version.js';
export * from './names.js';
export * from './errors.js';
export * from './chunk.js';
export * from './schemas.js';
export * from './messages.js';
export * from './parse.js';
export * from './sizes.js';
