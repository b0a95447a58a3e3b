/*
 * strata's command line.
 *
 *   strata serve [--config FILE] [--data-dir DIR] [--ready-file PATH]
 *   strata admin <command> [--url URL] [--token T]
 *   strata version
 *   strata help [command]
 *
 * `strata` alone is `strata serve`. Configuration errors exit with code 2
 * and a message naming the key; other start-up failures with 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_cli.h"
#include "server.h"
#include "strata_version.h"
#include "util/log.h"

static const char usage_main[] =
    "usage: strata <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve     run the server (the default command)\n"
    "  admin     talk to a running server's admin API\n"
    "  version   print the version\n"
    "  help      print help for a command\n"
    "\n"
    "Run 'strata help <command>' for a command's options.\n";

static const char usage_serve[] =
    "usage: strata serve [--config FILE] [--data-dir DIR] [--ready-file PATH]\n"
    "\n"
    "  --config FILE       YAML configuration (see etc/strata.yaml); keys are\n"
    "                      overridden by STRATA_SECTION_KEY environment variables\n"
    "  --data-dir DIR      storage.data_dir, over the file and the environment\n"
    "  --ready-file PATH   once both listeners accept, write\n"
    "                      {\"ingest\": \"host:port\", \"query\": \"host:port\", \"pid\": N}\n"
    "  --log-level LEVEL   log.level: debug, info, notice, warn or error\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads limits, timeouts\n"
    "and the log level from the file and the environment.\n";

static int cmd_version(void)
{
    printf("strata %s\n", STRATA_VERSION);
    return 0;
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "serve")) {
        fputs(usage_serve, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "admin")) {
        fputs(admin_cli_usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    fprintf(stderr, "strata: no help for unknown command '%s'\n", argv[1]);
    return 2;
}

/* Takes the value of --name VALUE or --name=VALUE at argv[*i]. */
static const char *flag_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    const char *a = argv[*i];

    if (strncmp(a, name, n))
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "strata: option '%s' needs a value\n", name);
        exit(2);
    }
    return argv[++*i];
}

static int cmd_serve(int argc, char **argv)
{
    struct server_opts opts = {0};
    struct config cfg;
    struct err err;
    const char *v;

    for (int i = 1; i < argc; i++) {
        if (opts.noverrides == SERVER_MAX_OVERRIDES) {
            fprintf(stderr, "strata: too many options\n");
            return 2;
        }
        if ((v = flag_value(argc, argv, &i, "--config"))) {
            opts.config_path = v;
        } else if ((v = flag_value(argc, argv, &i, "--ready-file"))) {
            opts.ready_file = v;
        } else if ((v = flag_value(argc, argv, &i, "--data-dir"))) {
            opts.overrides[opts.noverrides++] = (struct server_override){"storage.data_dir", v};
        } else if ((v = flag_value(argc, argv, &i, "--log-level"))) {
            opts.overrides[opts.noverrides++] = (struct server_override){"log.level", v};
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_serve, stdout);
            return 0;
        } else {
            fprintf(stderr, "strata: unknown option '%s'\n%s", argv[i], usage_serve);
            return 2;
        }
    }
    err_clear(&err);
    if (server_load_config(&opts, &cfg, &err)) {
        fprintf(stderr, "strata: configuration error: %s\n", err.msg);
        return 2;
    }
    return server_run(&opts, &cfg);
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "serve";

    if (argc > 1 && argv[1][0] == '-')
        return cmd_serve(argc, argv);
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "admin"))
        return admin_cli_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version"))
        return cmd_version();
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
        return cmd_help(argc - 1, argv + 1);
    fprintf(stderr, "strata: unknown command '%s'\n%s", cmd, usage_main);
    return 2;
}
