/* pvf campaign create: defined by the distributed runtime's branch; this
 * build only says it is not there. */
#include "cli.h"

int pvf_cmd_campaign_create(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail("campaign create", 1, "not available in this build");
}
