#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::default_policy;
use crate::classify::*;
use crate::config::{FailureConditions, Policy};
use crate::hints::{parse_reset, parse_retry_after};
use crate::outcome::{FailureReason, Outcome};

fn status(code: u16) -> ResponseInfo<'static> {
    ResponseInfo {
        status: Some(code),
        details: Some("via_upstream"),
        ..ResponseInfo::default()
    }
}

fn failure(reason: FailureReason) -> Outcome {
    Outcome::Failure {
        reason,
        retry_after_ms: None,
    }
}

#[test]
fn default_failure_statuses_are_provider_failures() {
    let p = default_policy();
    for code in [500, 502, 503, 504, 529] {
        assert_eq!(
            classify(&status(code), &p),
            failure(FailureReason::Status5xx),
            "{code}"
        );
    }
}

#[test]
fn client_and_auth_errors_are_ignored() {
    let p = default_policy();
    for code in [400, 401, 403, 404, 413, 422, 409] {
        assert_eq!(classify(&status(code), &p), Outcome::Ignored, "{code}");
    }
}

#[test]
fn unlisted_5xx_is_ignored_and_2xx_succeeds() {
    let p = default_policy();
    assert_eq!(classify(&status(501), &p), Outcome::Ignored);
    assert_eq!(classify(&status(200), &p), Outcome::Success);
    assert_eq!(classify(&status(204), &p), Outcome::Success);
}

#[test]
fn rate_limit_follows_its_switch_and_carries_retry_after() {
    let p = default_policy();
    let info = ResponseInfo {
        retry_after: Some("7"),
        ..status(429)
    };
    assert_eq!(
        classify(&info, &p),
        Outcome::Failure {
            reason: FailureReason::RateLimit,
            retry_after_ms: Some(7_000)
        }
    );
    let off = Policy {
        conditions: FailureConditions {
            rate_limit: false,
            ..FailureConditions::default()
        },
        ..default_policy()
    };
    assert_eq!(classify(&info, &off), Outcome::Ignored);
}

#[test]
fn envoy_upstream_timeout_is_a_timeout() {
    let p = default_policy();
    let info = ResponseInfo {
        status: Some(504),
        flags: flags::UPSTREAM_REQUEST_TIMEOUT,
        details: Some("upstream_response_timeout"),
        ..ResponseInfo::default()
    };
    assert_eq!(classify(&info, &p), failure(FailureReason::Timeout));
    let off = Policy {
        conditions: FailureConditions {
            timeout: false,
            ..FailureConditions::default()
        },
        ..default_policy()
    };
    assert_eq!(
        classify(&info, &off),
        Outcome::Ignored,
        "switched off, not a 504 failure"
    );
}

#[test]
fn connect_failure_and_reset_are_connect_failures() {
    let p = default_policy();
    let refused = ResponseInfo {
        status: Some(503),
        flags: flags::UPSTREAM_CONNECTION_FAILURE,
        details: Some("upstream_reset_before_response_started{remote_connection_failure}"),
        ..ResponseInfo::default()
    };
    assert_eq!(
        classify(&refused, &p),
        failure(FailureReason::ConnectFailure)
    );
    let reset = ResponseInfo {
        status: Some(503),
        flags: flags::UPSTREAM_CONNECTION_TERMINATION,
        details: Some("upstream_reset_before_response_started{connection_termination}"),
        ..ResponseInfo::default()
    };
    assert_eq!(classify(&reset, &p), failure(FailureReason::ConnectFailure));
    let by_details_only = ResponseInfo {
        status: Some(503),
        details: Some("upstream_reset_before_response_started{remote_reset}"),
        ..ResponseInfo::default()
    };
    assert_eq!(
        classify(&by_details_only, &p),
        failure(FailureReason::ConnectFailure)
    );
    let off = Policy {
        conditions: FailureConditions {
            connect_failure: false,
            ..FailureConditions::default()
        },
        ..default_policy()
    };
    assert_eq!(classify(&refused, &off), Outcome::Ignored);
}

#[test]
fn unknown_cluster_is_a_config_error_not_a_provider_failure() {
    let p = default_policy();
    let info = ResponseInfo {
        status: Some(503),
        flags: flags::NO_CLUSTER_FOUND,
        details: Some("cluster_not_found"),
        ..ResponseInfo::default()
    };
    assert_eq!(classify(&info, &p), Outcome::Ignored);
}

#[test]
fn slow_success_counts_as_slow_failure() {
    let p = Policy {
        slow_call_ms: Some(1_000),
        ..default_policy()
    };
    let fast = ResponseInfo {
        duration_ms: 1_000,
        ..status(200)
    };
    let slow = ResponseInfo {
        duration_ms: 1_001,
        ..status(200)
    };
    assert_eq!(classify(&fast, &p), Outcome::Success);
    assert_eq!(classify(&slow, &p), failure(FailureReason::Slow));
    assert_eq!(
        classify(&slow, &default_policy()),
        Outcome::Success,
        "off unless set"
    );
}

#[test]
fn no_response_at_all_is_ignored() {
    assert_eq!(
        classify(&ResponseInfo::default(), &default_policy()),
        Outcome::Ignored
    );
}

#[test]
fn retry_after_forms_are_parsed() {
    assert_eq!(parse_retry_after("30", 0), Some(30_000));
    assert_eq!(parse_retry_after(" 1.5 ", 0), Some(1_500));
    // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 s.
    let now = 1_445_412_470_000;
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
        Some(10_000)
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now + 60_000),
        Some(0)
    );
    assert_eq!(parse_retry_after("soon", 0), None);
    assert_eq!(parse_retry_after("-5", 0), None);
    assert_eq!(parse_retry_after("", 0), None);
}

#[test]
fn retry_after_reads_the_obsolete_http_date_forms_and_rejects_a_wrong_weekday() {
    // Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s (RFC 9110's example).
    let now = 784_111_777_000 - 5_000;
    for v in [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ] {
        assert_eq!(parse_retry_after(v, now), Some(5_000), "{v}");
    }
    assert_eq!(
        parse_retry_after("Mon, 06 Nov 1994 08:49:37 GMT", now),
        None
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 24:49:37 GMT", now),
        None
    );
    assert_eq!(
        parse_retry_after("Thu, 29 Feb 2024 00:00:00 GMT", 0),
        Some(86_400_000)
    );
    assert_eq!(parse_retry_after("Thu, 29 Feb 2023 00:00:00 GMT", 0), None);
}

#[test]
fn reset_durations_take_fractions_and_cap_at_a_day() {
    assert_eq!(parse_reset("1.005s", 0), Some(1_005));
    assert_eq!(parse_reset("250us", 0), Some(0));
    assert_eq!(parse_reset("99999999999999999999999h", 0), Some(86_400_000));
    assert_eq!(
        parse_reset("2024-02-29 00:00:00.5", 1_709_164_800_000),
        Some(500)
    );
    assert_eq!(parse_reset("1969-12-31T23:59:59Z", 0), None);
}

#[test]
fn provider_rate_limit_reset_headers_are_parsed() {
    assert_eq!(parse_reset("6m0s", 0), Some(360_000));
    assert_eq!(parse_reset("20ms", 0), Some(20));
    assert_eq!(parse_reset("1h2m3.5s", 0), Some(3_723_500));
    assert_eq!(parse_reset("12", 0), Some(12_000));
    let now = 1_714_564_800_000; // 2024-05-01T12:00:00Z
    assert_eq!(parse_reset("2024-05-01T12:00:30Z", now), Some(30_000));
    assert_eq!(parse_reset("2024-05-01T12:00:30.250Z", now), Some(30_250));
    assert_eq!(parse_reset("2024-05-01T14:00:30+02:00", now), Some(30_000));
    assert_eq!(parse_reset("1x", 0), None);
    assert_eq!(parse_reset("2024-13-01T12:00:30Z", 0), None);
}

#[test]
fn longest_wait_wins_between_retry_after_and_reset() {
    let info = ResponseInfo {
        retry_after: Some("2"),
        ratelimit_reset: Some("1m"),
        ..status(429)
    };
    assert_eq!(wait_ms(&info), Some(60_000));
}

#[test]
fn failure_reason_codes_round_trip() {
    for r in FailureReason::ALL {
        assert_eq!(FailureReason::from_code(r.code()), Some(r));
    }
    assert_eq!(FailureReason::from_code(0), None);
}
