import { MemoryStore } from '../src/index.js';
import { storeConformance } from './conformance.js';

storeConformance('MemoryStore', () => new MemoryStore());
