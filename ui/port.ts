/** The mlpipe UI's default port (on 127.0.0.1). A module of its own, so the CLI reads it without loading the UI server. */
export const DEFAULT_UI_PORT = 8234;
