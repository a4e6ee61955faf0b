use super::report::{judge, table, Report, Row};
use super::*;

const RUN: &str = "\
3 processes, store file:/tmp/q.json, admission Exact: 7.128 s, 84 calls/s
service        issued   admitted     denied     before      added      after       lost
search            306        204        102          2        398        400       -194
llm               294        198         96          1        399        400       -201
total             600        402        198          3        797        800       -395
before, after: the store's totals in the windows this run touched; added = after - before; lost = admitted - added
search: normal calls stop at the Critical level: 80 % of 500 = 400 a day; denied: Critical 102
llm: normal calls stop at the Critical level: 80 % of 500 = 400 a month; denied: Critical 96
";

fn read(search: u64, llm: u64) -> String {
    format!(
        "1 processes, store file:/tmp/q.json, admission Exact: 0.009 s, 0 calls/s\n\
         service issued admitted denied before added after lost\n\
         search 0 0 0 {search} 0 {search} 0\n\
         llm 0 0 0 {llm} 0 {llm} 0\n\
         total 0 0 0 0 0 0 0\n"
    )
}

#[test]
fn reads_a_report() {
    let Report { rows, stops } = table(RUN).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        Row {
            service: "search".into(),
            admitted: 204,
            before: 2,
            added: 398,
            lost: -194
        }
    );
    assert_eq!(stops, [("search".into(), 400), ("llm".into(), 400)]);
    assert!(table("nothing").is_err());
}

#[test]
fn judges_the_totals() {
    let case = &FILE_CASES[1];
    let other = RUN.replace("204", "196").replace("198 ", "202 ");
    let ok = judge("x", case, [RUN, &other], [&read(400, 400), &read(400, 400)]);
    assert_eq!(ok.unwrap().len(), 2);
    // A count lost, or counted twice: the numbers are named.
    let lost = judge("x", case, [RUN, &other], [&read(390, 400), &read(390, 400)]);
    let lost = lost.unwrap_err();
    assert!(
        lost.contains("holds 390") && lost.contains("204") && lost.contains("10 lost"),
        "{lost}"
    );
    let twice = judge("x", case, [RUN, &other], [&read(400, 401), &read(400, 401)]);
    assert!(twice.unwrap_err().contains("1 counted twice"));
    // The builds disagree on the total.
    let differ = judge("x", case, [RUN, &other], [&read(400, 400), &read(399, 400)]);
    assert!(differ.unwrap_err().contains("reads a total of 400"));
    // A run printed lost > 0.
    let bad = RUN.replace("-194", "3");
    let error = judge(
        "x",
        case,
        [&bad, &other],
        [&read(400, 400), &read(400, 400)],
    );
    assert!(error.unwrap_err().contains("printed lost 3"));
}
