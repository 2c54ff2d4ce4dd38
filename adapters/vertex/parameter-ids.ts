/**
 * Vertex parameter IDs allow letters, digits and underscores, so a space key `training.lr` becomes
 * `training__lr`; the trial entrypoint maps it back. Kept apart from the client library, which
 * takes about a second to load.
 */
export const toParameterId = (key: string): string => key.replace(/\./g, '__');
export const fromParameterId = (id: string): string => id.replace(/__/g, '.');
