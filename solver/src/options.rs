//! Options of the exact solver (`SolveOptions`): read by the search (`exact`) and by the
//! solve entry points (`solve`), in a module of their own so neither imports the other
//! for them.

/// Options of the exact solver.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SolveOptions {
    /// Branch-and-bound nodes before giving up the proof (the best policy found is
    /// still returned, with `Proof::optimal == false`).
    pub node_limit: u64,
    /// DP states of the first exact pass (against the incumbent, or within the gap a
    /// sweep hints at) before the search turns to threshold probes. Default 3 000 (was
    /// 20 000: on ResNet-50 with indicators like real runs' the pass against a loose
    /// incumbent ran out of 20k states on 8 of 10 seeds, half of all states); 0 goes
    /// straight to the probes. Without a sweep's hint the pass gets at most
    /// [`SolveOptions::cold_first_pass_states`].
    pub first_pass_states: u64,
    /// The first pass's states when no sweep hints at the gap (it then runs against the
    /// incumbent, which is often loose): the smaller of this and `first_pass_states`.
    /// Default 1 000: the synthetic kinds' first passes finish within 902 states, and on
    /// `resnet50-real` the 3 000 that the pass ran out of were a fifth of all states; a
    /// sweep point's pass, within the previous point's gap, finishes more often and keeps
    /// `first_pass_states`.
    pub cold_first_pass_states: u64,
    /// Searches with at least this many free groups order them coarse-first (the
    /// groups that move the most-weighted budget row the most); smaller ones keep the
    /// layer order. Default 64.
    pub coarse_first_min_groups: usize,
    /// Searches with at least this many groups left with more than one choice (after
    /// reduced-cost fixing) skip the first pass and go straight to the threshold probes,
    /// unless a sweep hints at the gap: on such searches a pass against the incumbent
    /// nearly always runs out of its states (random 1000 × 36: 15–40% of all states
    /// spent for nothing). Default 64.
    pub first_pass_max_groups: usize,
    /// Without a sweep's hint, the first pass is skipped as well when the choices left at
    /// the incumbent's threshold combine into more than this many policies (the product
    /// of every group's count): such a pass runs out of its `cold_first_pass_states`
    /// before it ends. Default 2^42: on the bench's ResNet kinds (seeds 0–9) the first
    /// passes that finished had at most 2^40.6 combinations, and all but one of those that
    /// ran out 2^43.6 or more (docs/PERFORMANCE.md, 13:25 UTC).
    pub first_pass_max_combinations: u64,
    /// In a meet-in-the-middle pass, a backward stage that keeps at least this many
    /// states is also bounded by the forward half's final states (fewer: the bound
    /// costs more than the states it could drop). Default 32; 0 applies it everywhere.
    pub partner_min_states: usize,
    /// With two budget rows, a forward stage of a meet-in-the-middle pass with at least
    /// this many candidates (states × choices) builds the surrogate bound of the groups
    /// after it (the exact least cost of the rest under the two rows combined with the
    /// Lagrangian multipliers into one budget), which then bounds that stage and the
    /// later ones. Fewer: building it costs more than the states it drops. Default 256;
    /// 0 builds it at the first stage, `usize::MAX` never.
    pub surrogate_min_candidates: usize,
    /// The same for a backward stage of a meet-in-the-middle pass, with staircases of
    /// the groups it has not taken (the forward half's and the middle ones) that keep
    /// one row exact and relax the other at λ (a partial Lagrangian relaxation; both
    /// rows are tried in lockstep and the one with the smaller staircases kept). Default
    /// 256 (before: the λ-combined surrogate at 16 384; with these staircases at 256,
    /// `resnet50-real` 10 seeds 66.3M → 58.9M instructions, `random200` 3 seeds 66.2M →
    /// 45.5M, `random1000` 10 seeds 1.69G → 1.41G).
    pub surrogate_back_min_candidates: usize,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            node_limit: 20_000_000,
            first_pass_states: 3_000,
            coarse_first_min_groups: 64,
            first_pass_max_groups: 64,
            first_pass_max_combinations: 1 << 42,
            partner_min_states: 32,
            cold_first_pass_states: 1_000,
            surrogate_min_candidates: 256,
            surrogate_back_min_candidates: 256,
        }
    }
}
