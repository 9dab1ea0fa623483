/* pvf - Parameter Vulnerability Factor by statistical fault injection. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: pvf COMMAND [flags]\n"
    "\n"
    "  infer   --model DIR [--data FILE] [--format F] [--json] [--dump-outputs FILE]\n"
    "          accuracy, and agreement with the reference logits of the eval set\n"
    "  inject  --model DIR [--data FILE] --tensor NAME --index I --bit B[,B...]\n"
    "          [--fault MODEL] [--format F] [--json]\n"
    "          one trial at a given fault site\n"
    "  sweep   --model DIR [--data FILE] --trials N [--seed S] [--format F] [--fault MODEL]\n"
    "          [--tensor NAME]... [--by target|component] [--executors N] [--json]\n"
    "          N trials per tensor (or per component: router, shared_expert, ...): per-stratum\n"
    "          and whole-model PVF with 95% Wilson intervals;\n"
    "          N executor threads (default: one per core) share the weights\n"
    "\n"
    "formats:      fp32 fp16 bf16 fp8-e4m3 int8 int4 (scaled formats quantize weights of 2+\n"
    "              dims; their scales are fault targets NAME_scale); packagings that pick one\n"
    "              per tensor: llama4-fp8, llama4-int4 (Meta's Llama 4 releases)\n"
    "fault models: bit, bit:B, kbit:K, burst:L, stuck0[:B], stuck1[:B]\n";

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    int rc;
    if (strcmp(cmd, "infer") == 0)
        rc = pvf_cmd_infer(argc - 1, argv + 1);
    else if (strcmp(cmd, "inject") == 0)
        rc = pvf_cmd_inject(argc - 1, argv + 1);
    else if (strcmp(cmd, "sweep") == 0)
        rc = pvf_cmd_sweep(argc - 1, argv + 1);
    else if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        rc = puts("pvf 0.1.0") < 0;
    else
        return cli_fail(cmd, 2, "unknown command (see pvf help)");
    /* Results that could not be written are lost results: say so. */
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail(cmd, 1, "cannot write the output: %s", strerror(errno));
    return rc;
}
