//! The split state machine (`deploy/split.asl.json`, deployed by `deploy/template.yaml`) against
//! the rules of the Amazon States Language that matter to it and against the function's
//! contract: every `Next` names a state, every state is reachable, the Distributed Map reads the
//! plan's JSONL manifest and writes its results, every Lambda task sends one of the function's
//! events (plan, range, merge, failed) and retries what is transient, with full jitter, and every
//! main state's failure is recorded before the execution fails.
//!
//! cfn-lint does not read a `DefinitionUri` file, so the second test embeds the definition in a
//! template of its own (`AWS::StepFunctions::StateMachine` with `Definition`) and runs cfn-lint's
//! state machine schema (rule E3601) on it — and checks that a broken copy does fail it. It also
//! checks the template's side: substitutions, the state machine's name and the ARN the function
//! is given, and the state machine role's permissions. It needs `$PCAPLAB_PYTHON` (cfn-lint is
//! beside it, in the project's venv).
//!
//! moto does not help here: its ASL parser (moto 5.2) rejects `"ToleratedFailurePercentage": 0`
//! (an integer where its grammar wants a decimal) and knows no `JSONL` reader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use pcaplab_testkit::{python, run_python};
use serde_json::{Map, Value, json};

const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
/// What every Lambda task must retry: the Lambda service's transient errors and the
/// function's own `pcaplab.Retryable`.
const RETRIED: [&str; 5] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "pcaplab.Retryable",
];
/// The substitutions the definition uses (the template's `DefinitionSubstitutions`).
const SUBSTITUTIONS: [(&str, &str); 2] = [
    (
        "FunctionArn",
        "arn:aws:lambda:us-east-1:123456789012:function:pcaplab-pcaplab",
    ),
    ("SplitMaxConcurrency", "100"),
];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The definition's text as in the repository.
fn asl_text() -> String {
    std::fs::read_to_string(deploy().join("split.asl.json")).expect("read deploy/split.asl.json")
}

/// Every `${Name}` in `text`.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("an unterminated ${");
        found.insert(after[..end].to_owned());
        rest = &after[end..];
    }
    found
}

/// The definition with its substitutions made, as CloudFormation makes them.
fn asl() -> Value {
    let mut text = asl_text();
    for (name, value) in SUBSTITUTIONS {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    serde_json::from_str(&text).expect("deploy/split.asl.json is JSON")
}

fn obj<'v>(v: &'v Value, what: &str) -> &'v Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"))
}

fn str_at<'v>(v: &'v Value, key: &str, what: &str) -> &'v str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no string {key:?} in {v}"))
}

/// A state graph (the top level, or a Map's ItemProcessor): its states by name.
struct Graph<'v> {
    name: String,
    start: &'v str,
    states: &'v Map<String, Value>,
}

impl<'v> Graph<'v> {
    fn of(v: &'v Value, name: &str) -> Graph<'v> {
        Graph {
            name: name.to_owned(),
            start: str_at(v, "StartAt", name),
            states: obj(&v["States"], &format!("{name}: States")),
        }
    }

    fn state(&self, name: &str) -> &'v Value {
        self.states
            .get(name)
            .unwrap_or_else(|| panic!("{}: no state {name:?}", self.name))
    }

    /// The states `state` may go to next: `Next`, `Default`, the choices' and the catchers'.
    fn successors(state: &Value) -> Vec<&str> {
        let mut next: Vec<&str> = ["Next", "Default"]
            .iter()
            .filter_map(|k| state.get(*k).and_then(Value::as_str))
            .collect();
        for list in ["Catch", "Choices"] {
            for c in state
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                next.extend(c.get("Next").and_then(Value::as_str));
            }
        }
        next
    }

    /// Every transition names a state of this graph; every state is reachable from `StartAt`;
    /// every state ends (`End`, `Fail`, `Succeed`) or goes on (`Next`), not both; the graph can
    /// end. Returns the reachable states.
    fn check_shape(&self) -> BTreeSet<&'v str> {
        assert!(
            self.states.contains_key(self.start),
            "{}: StartAt {:?} names no state",
            self.name,
            self.start
        );
        let mut ends = 0;
        for (name, state) in self.states {
            let what = format!("{}: state {name:?}", self.name);
            assert!(name.len() <= 80, "{what}: a name has at most 80 characters");
            let kind = str_at(state, "Type", &what);
            for next in Self::successors(state) {
                assert!(
                    self.states.contains_key(next),
                    "{what} goes to {next:?}, which is no state of {}",
                    self.name
                );
            }
            let has_next = state.get("Next").is_some();
            let has_end = state.get("End") == Some(&json!(true));
            match kind {
                "Fail" | "Succeed" => {
                    assert!(
                        !has_next && !has_end,
                        "{what}: a {kind} has no Next nor End"
                    );
                    ends += 1;
                }
                "Choice" => assert!(
                    !has_next && !has_end,
                    "{what}: a Choice has no Next nor End"
                ),
                "Task" | "Pass" | "Map" | "Parallel" | "Wait" => {
                    assert!(has_next != has_end, "{what}: exactly one of Next and End");
                    ends += usize::from(has_end);
                }
                other => panic!("{what}: unknown Type {other:?}"),
            }
        }
        assert!(ends > 0, "{}: no state ends the execution", self.name);
        let mut seen = BTreeSet::new();
        let mut todo = vec![self.start];
        while let Some(name) = todo.pop() {
            if seen.insert(name) {
                todo.extend(Self::successors(self.state(name)));
            }
        }
        let unreachable: Vec<_> = self
            .states
            .keys()
            .filter(|k| !seen.contains(k.as_str()))
            .collect();
        assert!(
            unreachable.is_empty(),
            "{}: unreachable states {unreachable:?}",
            self.name
        );
        seen
    }
}

/// The `pcaplab` role of a Lambda task's event: the payload's `pcaplab` field, or `range` for
/// a task inside the Map that passes its item (a manifest line, a complete range event) whole.
fn role(task: &Value, in_map: bool, what: &str) -> String {
    assert_eq!(task["Resource"], LAMBDA_INVOKE, "{what}: not lambda:invoke");
    let params = &task["Parameters"];
    assert_eq!(
        params["FunctionName"], SUBSTITUTIONS[0].1,
        "{what}: invokes another function than the stack's"
    );
    if in_map {
        assert_eq!(
            params["Payload.$"], "$",
            "{what}: a range worker passes its item, a whole range event, as the payload"
        );
        assert!(
            params.get("Payload").is_none(),
            "{what}: Payload and Payload.$"
        );
        return "range".to_owned();
    }
    assert!(params.get("Payload.$").is_none(), "{what}: a Payload.$");
    str_at(&params["Payload"], "pcaplab", what).to_owned()
}

/// A Lambda task retries exactly the transient errors, with exponential backoff, full jitter
/// and a bound on the delay; nothing else is retried.
fn check_retry(task: &Value, what: &str) {
    let retriers = task["Retry"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no Retry"));
    let mut retried = BTreeSet::new();
    for r in retriers {
        let errors: Vec<&str> = r["ErrorEquals"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: a retrier without ErrorEquals"))
            .iter()
            .map(|e| e.as_str().expect("an error name"))
            .collect();
        for e in &errors {
            assert!(
                RETRIED.contains(e),
                "{what} retries {e:?}: only transient errors are retried (the function's other errors fail for good)"
            );
            assert!(retried.insert(*e), "{what} retries {e:?} twice");
        }
        assert_eq!(r["JitterStrategy"], "FULL", "{what}: full jitter ({r})");
        let number = |k: &str| {
            r[k].as_f64()
                .unwrap_or_else(|| panic!("{what}: retrier without {k}: {r}"))
        };
        let (interval, attempts, rate, max_delay) = (
            number("IntervalSeconds"),
            number("MaxAttempts"),
            number("BackoffRate"),
            number("MaxDelaySeconds"),
        );
        assert!(
            (1.0..=10.0).contains(&interval),
            "{what}: IntervalSeconds {interval}"
        );
        assert!(
            (2.0..=10.0).contains(&attempts),
            "{what}: MaxAttempts {attempts}"
        );
        assert!((1.5..=3.0).contains(&rate), "{what}: BackoffRate {rate}");
        assert!(
            (interval..=300.0).contains(&max_delay),
            "{what}: MaxDelaySeconds {max_delay}"
        );
    }
    let missing: Vec<_> = RETRIED.iter().filter(|e| !retried.contains(*e)).collect();
    assert!(missing.is_empty(), "{what} does not retry {missing:?}");
}

/// `state` catches every error into `$.error` and goes to `handler`.
fn check_catch(state: &Value, handler: &str, what: &str) {
    let catchers = state["Catch"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no Catch"));
    let all = catchers
        .iter()
        .find(|c| c["ErrorEquals"] == json!(["States.ALL"]))
        .unwrap_or_else(|| panic!("{what}: no catcher of States.ALL"));
    assert_eq!(
        all["ResultPath"], "$.error",
        "{what}: the error goes to $.error, beside the state (the failed event takes it all)"
    );
    assert_eq!(
        all["Next"], handler,
        "{what}: errors go to the failure handler"
    );
}

#[test]
fn the_split_state_machine_follows_the_states_language_and_the_functions_contract() {
    let text = asl_text();
    let expected: BTreeSet<String> = SUBSTITUTIONS.iter().map(|(k, _)| (*k).to_owned()).collect();
    assert_eq!(
        placeholders(&text),
        expected,
        "the definition's substitutions"
    );
    let asl = asl();
    let top = Graph::of(&asl, "the state machine");
    top.check_shape();

    // The Lambda tasks, their roles, where they are.
    let mut by_role: BTreeMap<String, (String, &Value)> = BTreeMap::new();
    let mut maps = Vec::new();
    for (name, state) in top.states {
        match str_at(state, "Type", name) {
            "Task" => {
                let r = role(state, false, name);
                assert!(
                    by_role.insert(r.clone(), (name.clone(), state)).is_none(),
                    "two tasks send {r:?}"
                );
            }
            "Map" => maps.push((name, state)),
            _ => {}
        }
    }
    assert_eq!(maps.len(), 1, "one Map, the ranges");
    let (map_name, map) = maps[0];
    let processor = Graph::of(&map["ItemProcessor"], "the Map's ItemProcessor");
    processor.check_shape();
    for (name, state) in processor.states {
        if state["Type"] == "Task" {
            let r = role(state, true, name);
            assert!(
                by_role.insert(r.clone(), (name.clone(), state)).is_none(),
                "two tasks send {r:?}"
            );
            assert_eq!(
                state["OutputPath"], "$.Payload",
                "{name}: a worker's result is the function's answer only (it goes to the Map's results)"
            );
        }
    }
    let roles: Vec<&str> = by_role.keys().map(String::as_str).collect();
    assert_eq!(
        roles,
        ["failed", "merge", "plan", "range"],
        "the tasks' events"
    );
    for (name, task) in by_role.values() {
        check_retry(task, name);
    }

    // Plan: the object in, the plan's fields (from the Lambda answer's Payload) at $.plan.
    let (plan_name, plan) = &by_role["plan"];
    assert_eq!(
        plan["Parameters"]["Payload"],
        json!({"pcaplab": "plan", "object.$": "$.object"}),
        "the plan event"
    );
    assert_eq!(plan["ResultPath"], "$.plan");
    assert_eq!(
        plan["ResultSelector"],
        json!({"manifest.$": "$.Payload.manifest", "work.$": "$.Payload.work",
               "ranges.$": "$.Payload.ranges", "merge.$": "$.Payload.merge"}),
        "the plan's answer"
    );
    assert_eq!(plan["Next"], map_name.as_str(), "Plan, then the ranges");

    // The ranges: a Distributed Map over the plan's JSONL manifest.
    assert_eq!(
        map["ItemProcessor"]["ProcessorConfig"],
        json!({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}),
        "Distributed; Standard child executions (a range may take Lambda's 15 minutes, Express allows 5)"
    );
    let reader = &map["ItemReader"];
    assert_eq!(reader["Resource"], "arn:aws:states:::s3:getObject");
    assert_eq!(reader["ReaderConfig"], json!({"InputType": "JSONL"}));
    assert_eq!(
        reader["Parameters"],
        json!({"Bucket.$": "$.plan.manifest.Bucket", "Key.$": "$.plan.manifest.Key"}),
        "the manifest the plan wrote"
    );
    for k in [
        "ItemsPath",
        "ItemSelector",
        "ItemBatcher",
        "Parameters",
        "Iterator",
    ] {
        assert!(
            map.get(k).is_none(),
            "the Map has {k}: each item must reach the function unchanged (a complete range event)"
        );
    }
    assert_eq!(
        map["ToleratedFailurePercentage"],
        json!(0),
        "a failed range fails the capture"
    );
    assert!(
        map.get("ToleratedFailureCount").is_none()
            && map.get("ToleratedFailurePercentagePath").is_none(),
        "no other failure tolerance"
    );
    let writer = &map["ResultWriter"];
    assert_eq!(writer["Resource"], "arn:aws:states:::s3:putObject");
    let wp = obj(&writer["Parameters"], "ResultWriter.Parameters");
    assert!(
        wp.contains_key("Bucket") || wp.contains_key("Bucket.$"),
        "ResultWriter: a bucket"
    );
    assert!(
        wp.contains_key("Prefix") || wp.contains_key("Prefix.$"),
        "ResultWriter: a prefix"
    );
    assert_eq!(
        map["ResultPath"], "$.results",
        "the Map's output ({{MapRunArn, ResultWriterDetails}}) at $.results"
    );
    // Its concurrency: the template's parameter, through the state (MaxConcurrency is a number,
    // a substitution is text).
    match (map.get("MaxConcurrency"), map.get("MaxConcurrencyPath")) {
        (Some(n), None) => assert!(n.as_u64().is_some_and(|n| n > 0), "MaxConcurrency {n}"),
        (None, Some(path)) => {
            let path = path.as_str().expect("MaxConcurrencyPath is a path");
            let field = path
                .strip_prefix("$.settings.")
                .unwrap_or_else(|| panic!("MaxConcurrencyPath {path} is not in $.settings"));
            let settings = top
                .states
                .values()
                .find(|s| s["ResultPath"] == "$.settings")
                .expect("a state that writes $.settings");
            assert_eq!(settings["Type"], "Pass");
            assert_eq!(
                settings["Parameters"][format!("{field}.$")],
                format!("States.StringToJson('{}')", SUBSTITUTIONS[1].1),
                "the concurrency is the template's SplitMaxConcurrency, as a number"
            );
            assert_eq!(
                settings["Next"],
                plan_name.as_str(),
                "the settings come first"
            );
            assert_eq!(
                top.start,
                top.states
                    .iter()
                    .find(|(_, s)| *s == settings)
                    .map(|(k, _)| k.as_str())
                    .expect("named"),
                "StartAt the settings"
            );
        }
        other => panic!("the Map needs one of MaxConcurrency and MaxConcurrencyPath: {other:?}"),
    }
    // A manifest read is retried (no range has run yet); never every error.
    for r in map["Retry"].as_array().into_iter().flatten() {
        let errors = &r["ErrorEquals"];
        assert!(
            !errors.to_string().contains("States.ALL")
                && !errors.to_string().contains("States.TaskFailed"),
            "the Map retries {errors}: that would convert every range again"
        );
        assert_eq!(r["JitterStrategy"], "FULL", "the Map's retry: full jitter");
    }

    // Merge: the plan's merge object and the results' location, after the Map.
    let (merge_name, merge) = &by_role["merge"];
    assert_eq!(map["Next"], merge_name.as_str(), "the ranges, then Merge");
    assert_eq!(
        merge["Parameters"]["Payload"],
        json!({"pcaplab": "merge", "plan.$": "$.plan.merge", "results.$": "$.results.ResultWriterDetails"}),
        "the merge event"
    );
    assert_eq!(merge["End"], true, "Merge ends a successful execution");

    // Failures: Plan, the Map and Merge are caught into the failed event, which is itself
    // retried and caught, and which ends in a Fail state either way.
    let (failed_name, failed) = &by_role["failed"];
    for (name, state) in [
        (plan_name.as_str(), *plan),
        (map_name.as_str(), map),
        (merge_name.as_str(), *merge),
    ] {
        check_catch(state, failed_name, name);
    }
    assert_eq!(
        failed["Parameters"]["Payload"],
        json!({"pcaplab": "failed", "execution.$": "$"}),
        "the failed event carries the whole state (object, plan, error)"
    );
    assert!(
        failed["ResultPath"].is_null()
            || !["$", "$.error"].contains(&failed["ResultPath"].as_str().unwrap_or("$")),
        "the failed handler's answer must not replace the error"
    );
    let fail_state = |name: &Value, what: &str| {
        let s = top.state(name.as_str().unwrap_or_else(|| panic!("{what}: no Next")));
        assert_eq!(s["Type"], "Fail", "{what} must end in a Fail state");
        for (fixed, path) in [("Error", "ErrorPath"), ("Cause", "CausePath")] {
            assert!(
                s.get(fixed).is_some() != s.get(path).is_some(),
                "{what}: the Fail state has one of {fixed} and {path}"
            );
        }
    };
    // After the failed handler: a replaced object (the function's `pcaplab.Superseded`) ends
    // the execution quietly; anything else in a Fail state.
    let choice = top.state(failed["Next"].as_str().expect("the failed handler's Next"));
    assert_eq!(
        choice["Type"], "Choice",
        "the failed handler, then a Choice"
    );
    assert_eq!(
        choice["Choices"],
        json!([{"Variable": "$.error.Error", "StringEquals": "pcaplab.Superseded", "Next": "Superseded"}]),
        "a replaced object is not a failure"
    );
    assert_eq!(top.state("Superseded")["Type"], "Succeed");
    fail_state(&choice["Default"], "the failed handler");
    let caught = failed["Catch"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["ErrorEquals"] == json!(["States.ALL"])))
        .expect("the failed handler's own failure is caught");
    assert_ne!(caught["ResultPath"], "$.error", "keep the original error");
    assert_ne!(caught["ResultPath"], "$", "keep the original error");
    fail_state(&caught["Next"], "the failed handler's failure");
    // Nothing but the failure path reaches the handler or a Fail state.
    for (name, state) in top.states {
        if state["Type"] == "Task" || state["Type"] == "Map" {
            assert!(
                state.get("Catch").is_some() || name == failed_name,
                "{name}: uncaught; a failure would leave the item unrecorded"
            );
        }
    }
}

/// What the second test runs with the venv's Python: cfn-lint on a template embedding the
/// definition (and on a broken copy), then the deployment template's side of the contract.
const CHECK: &str = r#"
import copy, json, subprocess, sys, tempfile, os
from cfnlint.decode import decode

cfn_lint, asl_path, template_path = sys.argv[1:4]
substitutions = json.loads(sys.argv[4])
asl = json.load(open(asl_path))

def lint(definition):
    t = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {"Split": {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {"RoleArn": "arn:aws:iam::123456789012:role/split", "StateMachineType": "STANDARD",
                       "Definition": definition, "DefinitionSubstitutions": substitutions}}}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(t, f)
    try:
        p = subprocess.run([cfn_lint, f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    return p.returncode, (p.stdout + p.stderr).replace("\n", " ")

rc, out = lint(asl)
print("lint\t%d\t%s" % (rc, out))
broken = copy.deepcopy(asl)
broken["States"]["Ranges"]["ItemProcessor"]["States"]["Range"]["Bogus"] = True
rc, out = lint(broken)
print("broken\t%d\t%s" % (rc, out))

tpl, errors = decode(template_path)
assert not errors, errors
res = tpl["Resources"]
sm = res["SplitStateMachine"]["Properties"]
print("definition\t%s" % sm["DefinitionUri"])
print("substitutions\t%s" % json.dumps(sorted(sm["DefinitionSubstitutions"])))
print("function_arn\t%s" % json.dumps(sm["DefinitionSubstitutions"]["FunctionArn"]))
print("name\t%s" % json.dumps(sm["Name"]))
print("type\t%s" % sm["Type"])
env = res["Function"]["Properties"]["Environment"]["Variables"]
print("env_arn\t%s" % json.dumps(env["PCAPLAB_STATE_MACHINE_ARN"]))
print("env_threshold\t%s" % json.dumps(env["PCAPLAB_SPLIT_THRESHOLD"]))
print("env_range\t%s" % json.dumps(env["PCAPLAB_SPLIT_RANGE"]))
for policy in sm["Policies"]:
    for s in policy["Statement"]:
        print("sm_statement\t%s\t%s\t%s" % (s["Sid"], json.dumps(s["Action"]), json.dumps(s["Resource"])))
"#;

#[test]
fn cfn_lint_validates_the_definition_and_the_template_wires_it() {
    let Some(py) = python() else { return };
    let cfn_lint = py
        .parent()
        .expect("PCAPLAB_PYTHON has a directory")
        .join("cfn-lint");
    let substitutions: Map<String, Value> = SUBSTITUTIONS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let out = run_python(
        &mut Command::new(&py),
        CHECK,
        &[
            cfn_lint.to_str().expect("utf8 path"),
            deploy().join("split.asl.json").to_str().expect("utf8 path"),
            deploy().join("template.yaml").to_str().expect("utf8 path"),
            &Value::Object(substitutions).to_string(),
        ],
    );
    let mut lines: BTreeMap<&str, Vec<Vec<&str>>> = BTreeMap::new();
    for l in out.lines() {
        let mut f = l.split('\t');
        let kind = f.next().expect("a kind");
        lines.entry(kind).or_default().push(f.collect());
    }
    let one = |k: &str| lines[k][0].clone();

    // cfn-lint's state machine schema: clean on the definition, and it does run (a broken copy
    // fails E3601).
    let lint = one("lint");
    assert_eq!(lint[0], "0", "cfn-lint on the definition: {}", lint[1]);
    let broken = one("broken");
    assert_ne!(
        broken[0], "0",
        "cfn-lint passed a broken definition: {}",
        broken[1]
    );
    assert!(
        broken[1].contains("E3601"),
        "not the schema rule: {}",
        broken[1]
    );

    // The template: this file, its substitutions, the name the function's ARN is built from.
    assert_eq!(one("definition"), ["split.asl.json"]);
    assert_eq!(
        one("substitutions"),
        [r#"["FunctionArn", "SplitMaxConcurrency"]"#]
    );
    assert_eq!(
        one("function_arn"),
        [r#"{"Fn::GetAtt": ["Function", "Arn"]}"#]
    );
    assert_eq!(one("name"), [r#"{"Fn::Sub": "${AWS::StackName}-split"}"#]);
    assert_eq!(one("type"), ["STANDARD"]);
    let env_arn = one("env_arn")[0];
    assert!(
        env_arn.contains(r#":stateMachine:${AWS::StackName}-split"}"#),
        "the function's PCAPLAB_STATE_MACHINE_ARN is the state machine's: {env_arn}"
    );
    assert_eq!(one("env_threshold"), [r#"{"Ref": "SplitThreshold"}"#]);
    assert_eq!(one("env_range"), [r#"{"Ref": "SplitRange"}"#]);

    // The state machine's role: the function only; no resource "*" but log delivery's.
    let statements: BTreeMap<&str, (&str, &str)> = lines["sm_statement"]
        .iter()
        .map(|f| (f[0], (f[1], f[2])))
        .collect();
    assert_eq!(
        statements["InvokeFunction"],
        (
            r#""lambda:InvokeFunction""#,
            r#"{"Fn::GetAtt": ["Function", "Arn"]}"#
        )
    );
    for (sid, (actions, resource)) in &statements {
        if *sid == "LogDelivery" {
            assert!(
                actions
                    .split('"')
                    .all(|a| !a.contains(':') || a.starts_with("logs:")),
                "{sid}: {actions}"
            );
        } else {
            assert!(!resource.contains(r#""*""#), "{sid}: resource {resource}");
            assert!(!actions.contains('*'), "{sid}: actions {actions}");
        }
        if actions.contains("s3:") {
            assert!(
                resource.contains("${OutputPrefix}pcaplab-split/*"),
                "{sid}: S3 only under the work prefix: {resource}"
            );
        }
    }
}
