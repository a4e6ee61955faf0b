//! A table of counts per service (the counters, the instances' shared store).

use crate::dynamic::{flag, text};
use leptos::prelude::*;

/// The columns of a counts table: the header and the test-id stem of each (`issued` gives
/// `<prefix>issued-<service>` and `<prefix>issued-total`); the last one is the "lost" column,
/// and a row whose count there is above 0 is highlighted.
pub type Columns = &'static [(&'static str, &'static str)];

/// The rows of a counts table: each service's name and its count per column, in config order.
pub type Rows = Memo<Vec<(String, Vec<u64>)>>;

/// What a service counts, by name, for a table with a unit column.
pub type UnitOf = fn(&str) -> &'static str;

/// The inside of a `<table>`: a header, a row per service and the totals. With `unit_of`, a
/// "Unit" column follows the service's name (test id `<prefix>unit-<service>`), and the
/// totals add only the rows counted in calls (tokens and calls do not add up).
///
/// The rows are keyed by service and each cell is a text node of its own: while the workers
/// run, a frame changes only the text of the cells whose numbers changed; rows come and go
/// only when the services do.
#[component]
pub fn CountsTable(
    /// Prepended to every test id (`instances-`, or nothing).
    prefix: &'static str,
    /// The columns.
    columns: Columns,
    /// The counts.
    rows: Rows,
    /// Each service's unit, if the table shows them.
    #[prop(optional)]
    unit_of: Option<UnitOf>,
) -> impl IntoView {
    let names = Memo::new(move |_| {
        rows.with(|rows| {
            rows.iter()
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>()
        })
    });
    let totals = Memo::new(move |_| {
        rows.with(|rows| {
            let mut totals = vec![0u64; columns.len()];
            let calls = |name: &str| unit_of.is_none_or(|unit_of| unit_of(name) == "calls");
            for (_, counts) in rows.iter().filter(|(name, _)| calls(name)) {
                for (total, count) in totals.iter_mut().zip(counts) {
                    *total += count;
                }
            }
            totals
        })
    });
    view! {
        <thead>
            <tr>
                <th scope="col">"Service"</th>
                {unit_of.map(|_| view! { <th scope="col">"Unit"</th> })}
                {columns
                    .iter()
                    .map(|&(header, _)| view! { <th scope="col">{header}</th> })
                    .collect_view()}
            </tr>
        </thead>
        <tbody>
            <For each=move || names.get() key=|name| name.clone() let:name>
                {
                    let key = name.clone();
                    let counts = Memo::new(move |_| {
                        rows.with(|rows| {
                            rows.iter()
                                .find(|(name, _)| *name == key)
                                .map(|(_, counts)| counts.clone())
                                .unwrap_or_default()
                        })
                    });
                    let unit = unit_of.map(|unit_of| unit_of(&name));
                    row(prefix, columns, name.clone(), name, unit, counts)
                }
            </For>
        </tbody>
        <tfoot>
            {row(
                prefix,
                columns,
                "All services".to_owned(),
                "total".to_owned(),
                unit_of.map(|_| "calls"),
                totals,
            )}
        </tfoot>
    }
}

/// One row: `header`, its `unit` (if the table shows units) and `counts`, whose cells' test
/// ids end in `suffix`.
fn row(
    prefix: &'static str,
    columns: Columns,
    header: String,
    suffix: String,
    unit: Option<&'static str>,
    counts: Memo<Vec<u64>>,
) -> impl IntoView {
    let lost = flag(move || counts.with(|c| c.last().is_some_and(|&lost| lost > 0)));
    view! {
        <tr class:lost=lost>
            <th scope="row">{header}</th>
            {unit.map(|unit| view! { <td data-testid=format!("{prefix}unit-{suffix}")>{unit}</td> })}
            {columns
                .iter()
                .enumerate()
                .map(|(column, &(_, stem))| {
                    view! {
                        <td data-testid=format!("{prefix}{stem}-{suffix}")>
                            {text(move || {
                                counts.with(|c| c.get(column).copied().unwrap_or(0).to_string())
                            })}
                        </td>
                    }
                })
                .collect_view()}
        </tr>
    }
}
