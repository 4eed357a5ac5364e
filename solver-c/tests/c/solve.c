/* The limpq solver from C: solve an indicator file under a BitOps and a size budget,
 * price the solved policy again, sweep the BitOps range, take the policy and the sweep
 * as the files `limpq solve -o` writes, and read an infeasible budget's error. Prints
 * one JSON line per result.
 *
 *   cargo build --release -p limpq-solver-c
 *   cc -std=c99 -I solver-c/include solver-c/tests/c/solve.c \
 *      target/release/liblimpq_solver_c.a -lpthread -ldl -lm -o solve
 *   ./solve examples/resnet20.indicators.ron w4a4 cr:8 5
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "limpq_solver.h"

/* On failure: print the call, its status and the library's message; return 1. */
#define CHECK(call)                                                                \
    do {                                                                           \
        LimpqStatus status_ = (call);                                              \
        if (status_ != LIMPQ_OK) {                                                 \
            fprintf(stderr, "%s: status %d: %s\n", #call, (int)status_,            \
                    limpq_last_error());                                           \
            return 1;                                                              \
        }                                                                          \
    } while (0)

static void print_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* The policy's fields: bits per layer, objective, BitOps, size, use of every budget. */
static int print_policy(const LimpqPolicy *policy) {
    const char *model;
    double objective;
    uint64_t bitops, fixed_bitops, size_bits, budget;
    bool has_budget;
    size_t n_layers, n_usage;
    CHECK(limpq_policy_model(policy, &model));
    CHECK(limpq_policy_objective(policy, &objective));
    CHECK(limpq_policy_bitops(policy, &bitops));
    CHECK(limpq_policy_fixed_bitops(policy, &fixed_bitops));
    CHECK(limpq_policy_weight_bits_total(policy, &size_bits));
    CHECK(limpq_policy_bitops_budget(policy, &has_budget, &budget));
    CHECK(limpq_policy_layer_count(policy, &n_layers));
    CHECK(limpq_policy_usage_count(policy, &n_usage));

    printf("\"model\":");
    print_string(model);
    printf(",\"objective\":%.17g,\"bitops\":%" PRIu64 ",\"fixed_bitops\":%" PRIu64
           ",\"weight_bits_total\":%" PRIu64 ",\"bitops_budget\":",
           objective, bitops, fixed_bitops, size_bits);
    if (has_budget)
        printf("%" PRIu64, budget);
    else
        printf("null");
    printf(",\"layers\":[");
    for (size_t i = 0; i < n_layers; i++) {
        LimpqLayerBits layer;
        CHECK(limpq_policy_layer(policy, i, &layer));
        printf(i ? ",[" : "[");
        print_string(layer.name);
        printf(",%" PRIu32 ",%" PRIu32 "]", layer.weight, layer.act);
    }
    printf("],\"usage\":[");
    for (size_t i = 0; i < n_usage; i++) {
        LimpqUsage usage;
        CHECK(limpq_policy_usage(policy, i, &usage));
        printf(i ? ",{\"name\":" : "{\"name\":");
        print_string(usage.name);
        printf(",\"used\":%.17g,\"budget\":", usage.used);
        if (usage.has_budget)
            printf("%.17g}", usage.budget);
        else
            printf("null}");
    }
    printf("]");
    return 0;
}

/* A solution: its policy and what the solver proved about it. */
static int print_solution(const LimpqSolution *solution) {
    const LimpqPolicy *policy;
    LimpqProof proof;
    CHECK(limpq_solution_policy(solution, &policy));
    CHECK(limpq_solution_proof(solution, &proof));
    if (print_policy(policy))
        return 1;
    printf(",\"proof\":{\"optimal\":%s,\"lower_bound\":%.17g,\"gap\":%.17g,\"nodes\":%" PRIu64
           "}",
           proof.optimal ? "true" : "false", proof.lower_bound, proof.gap, proof.nodes);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s INDICATORS BITOPS SIZE POINTS\n", argv[0]);
        return 2;
    }
    /* On an error the program returns at once; the OS takes back what was not freed. */
    LimpqProblem *problem = NULL;
    CHECK(limpq_problem_from_file(argv[1], &problem));
    CHECK(limpq_problem_set_bitops_text(problem, argv[2]));
    CHECK(limpq_problem_set_size_text(problem, argv[3]));

    /* Solve. */
    LimpqSolution *solution = NULL;
    CHECK(limpq_problem_solve(problem, &solution));
    printf("{\"kind\":\"solve\",");
    if (print_solution(solution))
        return 1;
    printf("}\n");

    /* Price the solved policy as a given one (the names stay the solution's). */
    const LimpqPolicy *policy;
    size_t n_layers;
    CHECK(limpq_solution_policy(solution, &policy));
    CHECK(limpq_policy_layer_count(policy, &n_layers));
    LimpqLayerBits *bits = malloc(n_layers * sizeof *bits + 1);
    if (!bits)
        return 1;
    for (size_t i = 0; i < n_layers; i++)
        CHECK(limpq_policy_layer(policy, i, &bits[i]));
    LimpqEvaluation *evaluation = NULL;
    const LimpqPolicy *priced;
    bool feasible;
    size_t n_violations;
    CHECK(limpq_problem_evaluate(problem, bits, n_layers, &evaluation));
    CHECK(limpq_evaluation_policy(evaluation, &priced));
    CHECK(limpq_evaluation_feasible(evaluation, &feasible));
    CHECK(limpq_evaluation_violation_count(evaluation, &n_violations));
    printf("{\"kind\":\"evaluate\",\"feasible\":%s,\"violations\":%zu,",
           feasible ? "true" : "false", n_violations);
    if (print_policy(priced))
        return 1;
    printf("}\n");

    /* Sweep the BitOps range (the BitOps budget set above is not used). */
    LimpqSweep *sweep = NULL;
    size_t points;
    CHECK(limpq_problem_sweep(problem, strtoul(argv[4], NULL, 10), &sweep));
    CHECK(limpq_sweep_len(sweep, &points));
    for (size_t i = 0; i < points; i++) {
        const LimpqSolution *point;
        CHECK(limpq_sweep_point(sweep, i, &point));
        printf("{\"kind\":\"sweep\",\"index\":%zu,", i);
        if (print_solution(point))
            return 1;
        printf("}\n");
    }

    /* The policy and the sweep as the files `limpq solve -o` and `limpq solve --sweep -o`
     * write (the policy file is what `limpq finetune --policy` and `limpq export` read):
     * text borrowed from the solution and the sweep, to save or pass on. */
    const char *policy_file, *frontier_file;
    CHECK(limpq_policy_text(policy, LIMPQ_FORMAT_RON, &policy_file));
    CHECK(limpq_sweep_text(sweep, LIMPQ_FORMAT_JSON, &frontier_file));
    printf("{\"kind\":\"files\",\"policy_ron\":");
    print_string(policy_file);
    printf(",\"frontier_json\":");
    print_string(frontier_file);
    printf("}\n");

    /* A budget no policy meets: the status says which kind of error, the message why. */
    LimpqSolution *none = NULL;
    CHECK(limpq_problem_set_bitops(problem, 1));
    LimpqStatus status = limpq_problem_solve(problem, &none);
    printf("{\"kind\":\"error\",\"status\":%d,\"infeasible\":%s,\"null\":%s,\"message\":",
           (int)status, status == LIMPQ_INFEASIBLE ? "true" : "false",
           none == NULL ? "true" : "false");
    print_string(limpq_last_error());
    printf("}\n");

    free(bits);
    limpq_evaluation_free(evaluation);
    limpq_sweep_free(sweep);
    limpq_solution_free(solution);
    limpq_problem_free(problem);
    return status == LIMPQ_INFEASIBLE ? 0 : 1;
}
