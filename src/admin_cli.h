/*
 * `strata admin`: a small blocking HTTP client for a running server's
 * admin API, for operators and scripts.
 */
#ifndef ST_ADMIN_CLI_H
#define ST_ADMIN_CLI_H

extern const char admin_cli_usage[];

/* argv[0] is "admin". Returns the process exit code. */
int admin_cli_main(int argc, char **argv);

#endif
