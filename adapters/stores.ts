/** The artifact store for a location: a local folder, or gs://bucket/prefix with a local read cache. */
import { join } from 'node:path';
import type { ArtifactStore } from '../engine/ports.js';
import { GcsArtifactStore, storageFromEnv } from './gcs-store.js';
import { LocalArtifactStore } from './local-store.js';

export function createArtifactStore(location: string, options: { cacheDir: string; env?: NodeJS.ProcessEnv }): ArtifactStore {
  if (location.startsWith('gs://')) {
    // One environment for every setting of the store: the cache size and the endpoint (an emulator's).
    const env = options.env ?? process.env;
    const max = Number(env['MLPIPE_GCS_CACHE_MAX_BYTES'] ?? 10 * 2 ** 30);
    return new GcsArtifactStore({
      uri: location,
      storage: storageFromEnv(env),
      cacheDir: join(options.cacheDir, 'gcs-cache'),
      cacheMaxBytes: max,
    });
  }
  return new LocalArtifactStore(location.startsWith('file://') ? new URL(location).pathname : location);
}
