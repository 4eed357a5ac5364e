// The limpq solver from C++: the same runs as tests/c/solve.c (solve under a BitOps and
// a size budget, price the policy, sweep, the files `limpq solve -o` writes, an
// infeasible budget's error) with the handles
// owned by std::unique_ptr and failures thrown as exceptions. The indicator file is read
// here and handed over as text (limpq_problem_from_text). One JSON line per result.
//
//   c++ -std=c++17 -I solver-c/include solver-c/tests/cpp/solve.cpp
//       target/release/liblimpq_solver_c.a -lpthread -ldl -lm -o solve   (one line)
//   ./solve examples/resnet20.indicators.ron w4a4 cr:8 5
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "limpq_solver.h"

namespace {

struct Error : std::runtime_error {
    LimpqStatus status;
    Error(LimpqStatus s, const std::string &what) : std::runtime_error(what), status(s) {}
};

void check(LimpqStatus status, const char *call) {
    if (status != LIMPQ_OK)
        throw Error(status, std::string(call) + ": " + limpq_last_error());
}
#define LIMPQ(call) check((call), #call)

struct FreeProblem {
    void operator()(LimpqProblem *p) const { limpq_problem_free(p); }
};
struct FreeSolution {
    void operator()(LimpqSolution *s) const { limpq_solution_free(s); }
};
struct FreeSweep {
    void operator()(LimpqSweep *s) const { limpq_sweep_free(s); }
};
struct FreeEvaluation {
    void operator()(LimpqEvaluation *e) const { limpq_evaluation_free(e); }
};
using Problem = std::unique_ptr<LimpqProblem, FreeProblem>;
using Solution = std::unique_ptr<LimpqSolution, FreeSolution>;
using Sweep = std::unique_ptr<LimpqSweep, FreeSweep>;
using Evaluation = std::unique_ptr<LimpqEvaluation, FreeEvaluation>;

std::string quoted(const char *s) {
    std::string out = "\"";
    for (; *s; ++s) {
        unsigned char c = static_cast<unsigned char>(*s);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

std::string policy_fields(const LimpqPolicy *policy) {
    const char *model;
    double objective;
    uint64_t bitops, fixed_bitops, size_bits, budget;
    bool has_budget;
    size_t n_layers, n_usage;
    LIMPQ(limpq_policy_model(policy, &model));
    LIMPQ(limpq_policy_objective(policy, &objective));
    LIMPQ(limpq_policy_bitops(policy, &bitops));
    LIMPQ(limpq_policy_fixed_bitops(policy, &fixed_bitops));
    LIMPQ(limpq_policy_weight_bits_total(policy, &size_bits));
    LIMPQ(limpq_policy_bitops_budget(policy, &has_budget, &budget));
    LIMPQ(limpq_policy_layer_count(policy, &n_layers));
    LIMPQ(limpq_policy_usage_count(policy, &n_usage));
    std::ostringstream o;
    o << "\"model\":" << quoted(model) << ",\"objective\":" << number(objective)
      << ",\"bitops\":" << bitops << ",\"fixed_bitops\":" << fixed_bitops
      << ",\"weight_bits_total\":" << size_bits << ",\"bitops_budget\":";
    if (has_budget)
        o << budget;
    else
        o << "null";
    o << ",\"layers\":[";
    for (size_t i = 0; i < n_layers; ++i) {
        LimpqLayerBits layer;
        LIMPQ(limpq_policy_layer(policy, i, &layer));
        o << (i ? ",[" : "[") << quoted(layer.name) << "," << layer.weight << "," << layer.act
          << "]";
    }
    o << "],\"usage\":[";
    for (size_t i = 0; i < n_usage; ++i) {
        LimpqUsage usage;
        LIMPQ(limpq_policy_usage(policy, i, &usage));
        o << (i ? ",{" : "{") << "\"name\":" << quoted(usage.name)
          << ",\"used\":" << number(usage.used)
          << ",\"budget\":" << (usage.has_budget ? number(usage.budget) : "null") << "}";
    }
    o << "]";
    return o.str();
}

std::string solution_fields(const LimpqSolution *solution) {
    const LimpqPolicy *policy;
    LimpqProof proof;
    LIMPQ(limpq_solution_policy(solution, &policy));
    LIMPQ(limpq_solution_proof(solution, &proof));
    std::ostringstream o;
    o << policy_fields(policy) << ",\"proof\":{\"optimal\":" << (proof.optimal ? "true" : "false")
      << ",\"lower_bound\":" << number(proof.lower_bound) << ",\"gap\":" << number(proof.gap)
      << ",\"nodes\":" << proof.nodes << "}";
    return o.str();
}

int run(int argc, char **argv) {
    if (argc != 5) {
        std::cerr << "usage: " << argv[0] << " INDICATORS BITOPS SIZE POINTS\n";
        return 2;
    }
    std::ifstream file(argv[1], std::ios::binary);
    if (!file)
        throw std::runtime_error(std::string("cannot open ") + argv[1]);
    std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

    LimpqProblem *raw = nullptr;
    LIMPQ(limpq_problem_from_text(text.data(), text.size(), LIMPQ_FORMAT_AUTO, &raw));
    Problem problem(raw);
    LIMPQ(limpq_problem_set_bitops_text(problem.get(), argv[2]));
    LIMPQ(limpq_problem_set_size_text(problem.get(), argv[3]));

    LimpqSolution *solved = nullptr;
    LIMPQ(limpq_problem_solve(problem.get(), &solved));
    Solution solution(solved);
    std::cout << "{\"kind\":\"solve\"," << solution_fields(solution.get()) << "}\n";

    const LimpqPolicy *policy;
    size_t n_layers;
    LIMPQ(limpq_solution_policy(solution.get(), &policy));
    LIMPQ(limpq_policy_layer_count(policy, &n_layers));
    std::vector<LimpqLayerBits> bits(n_layers);
    for (size_t i = 0; i < n_layers; ++i)
        LIMPQ(limpq_policy_layer(policy, i, &bits[i]));
    LimpqEvaluation *evaluated = nullptr;
    LIMPQ(limpq_problem_evaluate(problem.get(), bits.data(), bits.size(), &evaluated));
    Evaluation evaluation(evaluated);
    const LimpqPolicy *priced;
    bool feasible;
    size_t n_violations;
    LIMPQ(limpq_evaluation_policy(evaluation.get(), &priced));
    LIMPQ(limpq_evaluation_feasible(evaluation.get(), &feasible));
    LIMPQ(limpq_evaluation_violation_count(evaluation.get(), &n_violations));
    std::cout << "{\"kind\":\"evaluate\",\"feasible\":" << (feasible ? "true" : "false")
              << ",\"violations\":" << n_violations << "," << policy_fields(priced) << "}\n";

    LimpqSweep *swept = nullptr;
    LIMPQ(limpq_problem_sweep(problem.get(), std::stoul(argv[4]), &swept));
    Sweep sweep(swept);
    size_t points;
    LIMPQ(limpq_sweep_len(sweep.get(), &points));
    for (size_t i = 0; i < points; ++i) {
        const LimpqSolution *point;
        LIMPQ(limpq_sweep_point(sweep.get(), i, &point));
        std::cout << "{\"kind\":\"sweep\",\"index\":" << i << "," << solution_fields(point)
                  << "}\n";
    }

    // The priced policy as a JSON policy file (it says `optimal: false`), the sweep as a
    // RON frontier file.
    const char *policy_file;
    const char *frontier_file;
    LIMPQ(limpq_policy_text(priced, LIMPQ_FORMAT_JSON, &policy_file));
    LIMPQ(limpq_sweep_text(sweep.get(), LIMPQ_FORMAT_RON, &frontier_file));
    std::cout << "{\"kind\":\"files\",\"policy_json\":" << quoted(policy_file)
              << ",\"frontier_ron\":" << quoted(frontier_file) << "}\n";

    LIMPQ(limpq_problem_set_bitops(problem.get(), 1));
    LimpqSolution *none = nullptr;
    try {
        LIMPQ(limpq_problem_solve(problem.get(), &none));
        Solution unexpected(none);
        return 1;
    } catch (const Error &e) {
        std::cout << "{\"kind\":\"error\",\"status\":" << static_cast<int>(e.status)
                  << ",\"infeasible\":" << (e.status == LIMPQ_INFEASIBLE ? "true" : "false")
                  << ",\"null\":" << (none == nullptr ? "true" : "false")
                  << ",\"message\":" << quoted(limpq_last_error()) << "}\n";
        return e.status == LIMPQ_INFEASIBLE ? 0 : 1;
    }
}

}  // namespace

int main(int argc, char **argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception &e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
}
