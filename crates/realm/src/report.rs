//! What an import did, or would do, in report lines.

use serde_json::Value;

use crate::admin::Admin;
use crate::args::{Failure, IfExists};
use crate::file::RealmFile;
use crate::plan::Item;

/// Says what an import would do, from the plan.
pub(crate) fn dry_run(
    admin: &Admin,
    file: &RealmFile,
    plan: &[Item],
    policy: IfExists,
    lines: &mut Vec<String>,
) -> Result<(), Failure> {
    lines.push(format!(
        "dry run: realm {} exists at {}; comparing its users, clients and roles with {} (policy {})",
        file.name,
        admin.shown_base(),
        file.summary(),
        policy.name()
    ));
    let (mut add, mut overwrite, mut skip, mut differ) = (0, 0, 0, 0);
    for item in plan {
        let action = match (item.exists(), item.differs.is_empty(), policy) {
            (false, _, _) => {
                add += 1;
                "would add"
            }
            (true, true, IfExists::Skip | IfExists::Overwrite) => {
                skip += 1;
                "would skip (exists)"
            }
            (true, false, IfExists::Skip) => {
                skip += 1;
                differ += 1;
                "would skip (differs)"
            }
            (true, false, IfExists::Overwrite) => {
                overwrite += 1;
                "would overwrite"
            }
            (true, _, IfExists::Fail) => {
                skip += 1;
                "conflict (exists)"
            }
        };
        let fields = if item.differs.is_empty() || policy == IfExists::Fail {
            String::new()
        } else {
            format!(": {}", item.differs.join(", "))
        };
        lines.push(format!(
            "  {action:<20} {} {}{fields}",
            item.kind.label(),
            item.name
        ));
    }
    if policy == IfExists::Fail && skip > 0 {
        return Err(Failure::Conflict(format!(
            "dry run: an import would fail: {skip} resource(s) already exist (policy fail); nothing was changed"
        )));
    }
    if differ > 0 {
        lines.push(format!(
            "dry run: {differ} existing resource(s) differ from the file; --if-exists overwrite would update them in place"
        ));
    }
    lines.push(format!(
        "dry run: {add} to add, {overwrite} to overwrite, {skip} to skip; realm settings of an existing realm are not changed; nothing was changed"
    ));
    Ok(())
}

/// Turns Keycloak's partial-import summary and the updates made in place
/// into report lines.
pub(crate) fn summarise(
    file: &RealmFile,
    base: &str,
    response: &Value,
    overwritten: &[&Item],
    policy: IfExists,
    plan: &[Item],
) -> Vec<String> {
    let count = |k: &str| response.get(k).and_then(Value::as_u64).unwrap_or(0);
    let added = count("added");
    let overwritten_count = overwritten.len() as u64;
    let skipped = count("skipped").saturating_sub(overwritten_count);
    let kept: Vec<&Item> = if policy == IfExists::Skip {
        plan.iter().filter(|i| !i.differs.is_empty()).collect()
    } else {
        Vec::new()
    };
    let mut lines = if added == 0 && overwritten_count == 0 {
        vec![format!(
            "no change: realm {} at {base} already has every user, client and role in the file ({skipped} skipped)",
            file.name
        )]
    } else {
        vec![format!(
            "updated realm {} at {base}: {added} added, {overwritten_count} overwritten, {skipped} skipped",
            file.name
        )]
    };
    for result in response
        .get("results")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let field = |k: &str| result.get(k).and_then(Value::as_str).unwrap_or("?");
        if field("action") != "SKIPPED" {
            lines.push(format!(
                "  {:<12} {} {}",
                field("action").to_lowercase(),
                field("resourceType").to_lowercase().replace('_', " "),
                field("resourceName")
            ));
        }
    }
    for item in overwritten {
        lines.push(format!(
            "  {:<12} {} {} ({})",
            "overwritten",
            item.kind.label(),
            item.name,
            item.differs.join(", ")
        ));
    }
    for item in &kept {
        lines.push(format!(
            "  {:<12} {} {} differs from the file ({}); kept Keycloak's version",
            "skipped",
            item.kind.label(),
            item.name,
            item.differs.join(", ")
        ));
    }
    if !kept.is_empty() {
        lines.push(format!(
            "{} existing resource(s) differ from the file; run again with --if-exists overwrite to update them in place",
            kept.len()
        ));
    }
    lines
}
