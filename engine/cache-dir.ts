import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * The cache of slow builds shared by every checkout (deploy/provision.sh's rule, an empty variable
 * counting as unset): MLPIPE_CACHE_DIR, else $XDG_CACHE_HOME/mlpipe, else ~/.cache/mlpipe.
 */
export function mlpipeCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env['MLPIPE_CACHE_DIR'] || join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'mlpipe'));
}
