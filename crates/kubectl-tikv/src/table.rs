//! Plain-text tables and ages, the way kubectl prints them.

use k8s_openapi::jiff::Timestamp;

/// `headers` and `rows` as columns padded to their widest cell, two spaces apart, each line
/// indented by `indent`.
pub fn render(indent: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::from(indent);
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// How long ago `then` was, as kubectl's AGE column says it: `45s`, `12m`, `3h`, `5d`.
pub fn age(then: Timestamp, now: Timestamp) -> String {
    let secs = (now.as_second() - then.as_second()).max(0);
    if secs < 120 {
        format!("{secs}s")
    } else if secs < 7200 {
        format!("{}m", secs / 60)
    } else if secs < 172_800 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}d", secs / 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = render(
            "  ",
            &["NAME", "STATE"],
            &[
                vec!["basic-tikv-a".into(), "Up".into()],
                vec!["b".into(), "Offline".into()],
            ],
        );
        assert_eq!(
            t,
            "  NAME          STATE\n  basic-tikv-a  Up\n  b             Offline\n"
        );
    }

    #[test]
    fn ages() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let ago = |s: i64| age(Timestamp::from_second(1_000_000 - s).unwrap(), now);
        assert_eq!(
            [ago(5), ago(600), ago(3 * 3600), ago(5 * 86_400)],
            ["5s", "10m", "3h", "5d"]
        );
    }
}
