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
    "          [--fault MODEL] [--format F] [--threshold T] [--naive] [--json]\n"
    "          one trial at a given fault site\n"
    "  sweep   --model DIR [--data FILE] --trials N [--seed S] [--format F] [--fault MODEL]\n"
    "          [--tensor NAME]... [--by tensor|component|layer|layer.component]\n"
    "          [--threshold T] [--executors N] [--naive] [--json]\n"
    "          N trials per tensor (or component: router, expert, ...; or layer): PVF per\n"
    "          stratum and whole-model PVF with 95% Wilson intervals; N executor threads\n"
    "          (default: one per core) share the weights\n"
    "  run     --model DIR [--data FILE] [--strata tensor|tensor-bit|component|component-bit]\n"
    "          [--fault MODEL] [--format F] [--margin E] [--rel-margin R] [--confidence C]\n"
    "          [--max-trials N] [--value fraction|any] [--seed S] [--workers N] [--executors N]\n"
    "          [--db DSN] [--json] [--quiet] [--heartbeat-ms MS] [--trial-deadline-ms MS] "
    "[--naive]\n"
    "          a whole campaign on this machine: database, coordinator and N local workers;\n"
    "          each stratum stops when its anytime-valid interval is within the margin; the\n"
    "          same command again resumes an unfinished campaign (or shows a finished one)\n"
    "  campaign create  (the flags of run without the local ones): store a campaign for\n"
    "          pvf coordinator; prints its id\n"
    "  coordinator --bind ENDPOINT [--db DSN] [--key FILE --allow FILE] [--campaign ID\n"
    "          [--exit-when-done]] [--heartbeat-ms MS] [--trial-deadline-ms MS] [--quiet]\n"
    "          serve the running campaigns to workers (tcp:// needs CURVE: --key, --allow)\n"
    "  worker  --connect ENDPOINT [--executors N] [--name NAME] [--cache DIR]\n"
    "          [--key FILE --server-key KEY] [--heartbeat-ms MS] [--fake-trials] [--naive]\n"
    "          run trials for a coordinator; models are fetched by sha256 into the cache\n"
    "          (--fake-trials: answer without inference, for coordinator benchmarks only)\n"
    "  keygen  --out NAME   a CURVE key pair: NAME.key (secret, mode 600) and NAME.pub\n"
    "  db      migrate [--db DSN] | start | stop | status | dsn\n"
    "          apply the schema migrations; the private PostgreSQL server under the pvf home\n"
    "          ($PVF_HOME, else /var/lib/pvf for root, else ~/.local/share/pvf); status exits\n"
    "          3 when it is stopped\n"
    "  report  --campaign ID [--by stratum|tensor|component|bit] [--format table|csv|json]\n"
    "          [--db DSN]\n"
    "          estimates with intervals, stopped/converged, and the model-level PVF\n"
    "  campaign list | show ID | cancel ID | extend ID --max-trials N  [--db DSN]\n"
    "          [--format table|csv|json] (list, show)\n"
    "  stats simulate --p P --margin E --confidence C --runs R [--seed S] [--max-trials N]\n"
    "          [--values binary|fraction [--inputs M]] [--json]\n"
    "          coverage and trials of the anytime-valid stopping rule on simulated strata\n"
    "\n"
    "database:     --db DSN, else $PVF_DB, else the private server (pvf db start)\n"
    "formats:      fp32 fp16 bf16 fp8-e4m3 int8 int4 (scaled formats quantize weights of 2+\n"
    "              dims; their scales are fault targets NAME_scale); packagings that pick one\n"
    "              per tensor: llama4-fp8, llama4-int4 (Meta's Llama 4 releases)\n"
    "fault models: bit, bit:B, kbit:K, burst:L, stuck0[:B], stuck1[:B]\n"
    "outcome:      top-1 class differs from golden (lenet, bert); dlrm: the click decision\n"
    "              at 0.5 differs, or with --threshold T: |p - p_golden| > T; llama4: the\n"
    "              greedy next token differs, per scored position\n";

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
    else if (strcmp(cmd, "run") == 0)
        rc = pvf_cmd_run(argc - 1, argv + 1);
    else if (strcmp(cmd, "coordinator") == 0)
        rc = pvf_cmd_coordinator(argc - 1, argv + 1);
    else if (strcmp(cmd, "worker") == 0)
        rc = pvf_cmd_worker(argc - 1, argv + 1);
    else if (strcmp(cmd, "keygen") == 0)
        rc = pvf_cmd_keygen(argc - 1, argv + 1);
    else if (strcmp(cmd, "db") == 0)
        rc = pvf_cmd_db(argc - 1, argv + 1);
    else if (strcmp(cmd, "report") == 0)
        rc = pvf_cmd_report(argc - 1, argv + 1);
    else if (strcmp(cmd, "campaign") == 0)
        rc = pvf_cmd_campaign(argc - 1, argv + 1);
    else if (strcmp(cmd, "stats") == 0)
        rc = pvf_cmd_stats(argc - 1, argv + 1);
    else if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        rc = puts("pvf 0.1.0") < 0;
    else
        return cli_fail(cmd, 2, "unknown command (see pvf help)");
    /* Results that could not be written are lost results: say so. */
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail(cmd, 1, "cannot write the output: %s", strerror(errno));
    return rc;
}
