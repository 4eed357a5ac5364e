//! The job files a user or a daemon client writes: a `limpq pipeline` job (parsed, then
//! planned: its model resolved and every budget priced against it) and a daemon job
//! (parsed and checked as the daemon checks a submission).
#![no_main]

use libfuzzer_sys::fuzz_target;
use limpq_trainer::daemon::job::JobSpec;
use limpq_trainer::pipeline::{Job, Plan};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(job) = Job::from_ron_str(text) {
        let _ = Plan::new(job);
    }
    if let Ok(spec) =
        limpq_solver::format::versioned::from_ron::<JobSpec>(text, JobSpec::FORMAT_VERSION)
    {
        let _ = spec.validate(false);
    }
});
