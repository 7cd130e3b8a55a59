//! Bad input: one clear line naming the field, exit 1, nothing written, never the value.

use sealbox_tests::*;

const SECRET_VALUE: &str = "Qzbadvalue";

#[test]
fn bad_entries_are_refused_with_one_line_and_nothing_written() {
    let sb = Sandbox::enrolled();
    sb.add(r#"{"name":"Li","phone":"13812345678","consent":true}"#);
    let before = file_digest(&sb.dev.join("sealbox.db"));
    let long = "x".repeat(51);
    let cases: Vec<(String, &str)> = vec![
        (
            format!(r#"{{"name":"{SECRET_VALUE}","phone":"1381234"#),
            "not valid JSON",
        ),
        (
            format!(
                r#"{{"name":"{SECRET_VALUE}","phone":"13812345678","hobby":"{SECRET_VALUE}","consent":true}}"#
            ),
            "field \"hobby\": the form has no such field",
        ),
        (
            format!(r#"{{"name":"{SECRET_VALUE}","consent":true}}"#),
            "field \"phone\": is required",
        ),
        (
            format!(r#"{{"name":"{long}","phone":"13812345678","consent":true}}"#),
            "field \"name\": is too long",
        ),
        (
            format!(r#"{{"name":"{SECRET_VALUE}","phone":"2{SECRET_VALUE}","consent":true}}"#),
            "field \"phone\": phone number should have 11 digits",
        ),
        (
            format!(
                r#"{{"name":"Li","phone":"13812345678","email":"{SECRET_VALUE}","consent":true}}"#
            ),
            "field \"email\": email should look like",
        ),
        (
            format!(r#"{{"name":"{SECRET_VALUE}","phone":"13812345678"}}"#),
            "consent is required",
        ),
        (
            format!(r#"{{"name":"{SECRET_VALUE}","phone":"13812345678","consent":false}}"#),
            "consent is required",
        ),
        (format!(r#"["{SECRET_VALUE}"]"#), "JSON object"),
    ];
    for (input, expected) in &cases {
        let err = sb.add_fail(input, &[]);
        assert!(err.contains(expected), "{input} → {err}");
        assert!(
            !err.contains(SECRET_VALUE),
            "the value must not be echoed: {err}"
        );
    }
    // Many lines: one bad line, reported by number, and none of them is written.
    let nd = sb.tmp.path().join("batch.ndjson");
    let good = r#"{"name":"Wang","phone":"13912345678","consent":true}"#;
    std::fs::write(&nd, format!("{good}\n{good}\n{{\"name\":\"{SECRET_VALUE}\",\"phone\":\"1\",\"consent\":true}}\n{good}\n")).unwrap();
    let err = sb.dev_fail(&["add", "--ndjson", nd.to_str().unwrap()], &[]);
    assert!(
        err.contains("line 3") && err.contains("\"phone\"") && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!err.contains(SECRET_VALUE));
    // The same refusal in Chinese.
    let err = sb.dev_fail(
        &["add", "--ndjson", nd.to_str().unwrap()],
        &[("SEALBOX_LANG", "zh")],
    );
    assert!(
        err.contains("第 3 行")
            && err.contains("手机号应为 11 位数字")
            && err.contains("未写入任何内容"),
        "{err}"
    );
    let err = sb.add_fail("{}", &[("SEALBOX_LANG", "zh-CN")]);
    // Fields are checked in the form's order before consent: the first required field speaks.
    assert!(
        err.contains("此项必填") && err.contains("\"name\"") && !err.contains("需要勾选同意"),
        "{err}"
    );
    assert_eq!(sb.pending(), 1);
    assert_eq!(
        before,
        file_digest(&sb.dev.join("sealbox.db")),
        "the database file is unchanged"
    );
    // From stdin works too.
    let mut c = sb.dev_cmd(&["add", "--ndjson", "-"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{good}\n{good}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    assert_eq!(sb.pending(), 3);
}

#[test]
fn usage_errors_exit_2_and_unenrolled_is_clear() {
    let sb = Sandbox::headoffice();
    let out = sb.dev_cmd(&["add"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = sb.add_fail("{}", &[]);
    assert!(err.contains("not enrolled"), "{err}");
    assert!(!sb.dev.exists());
    // Head office refuses a config with a located reason.
    let bad = sb.tmp.path().join("bad.json");
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("examples/trade-show.json")).unwrap(),
    )
    .unwrap();
    v["fields"][1].as_object_mut().unwrap().remove("purpose");
    std::fs::write(&bad, v.to_string()).unwrap();
    let err = fail(
        sb.ho_cmd(&["event", "create", bad.to_str().unwrap()])
            .output()
            .unwrap(),
        &["event"],
    );
    assert!(err.contains("fields[1] (phone).purpose"), "{err}");
    let err = fail(
        sb.ho_cmd(&[
            "enroll",
            "--device",
            "x",
            "--event",
            "nope",
            "--out",
            sb.tmp.path().join("x").to_str().unwrap(),
        ])
        .output()
        .unwrap(),
        &["enroll"],
    );
    assert!(err.contains("does not exist"), "{err}");
    // A tampered enrolment file (plain http) is refused.
    let file = sb.enrolment_file("booth-5");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("https://", "http://");
    std::fs::write(&file, text).unwrap();
    let err = sb.dev_fail(&["enroll", file.to_str().unwrap()], &[]);
    assert!(err.contains("https://"), "{err}");
    assert!(!sb.dev.join("device.json").exists());
}
