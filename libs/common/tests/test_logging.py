import logging

from warden_common.logging import RedactingFilter, redact, register_secret


def test_registered_secret_values_never_reach_a_log_line():
    register_secret("opaque-value-123456")
    assert "opaque-value-123456" not in redact("calling upstream with opaque-value-123456 now")


def test_credential_shaped_text_is_masked():
    line = redact(
        'Authorization: Bearer abc.def.ghi {"access_token": "xyz123", "client_secret": "s3"} ?code=c0de&state=st'
    )
    for s in ("abc.def.ghi", "xyz123", '"s3"', "c0de", "=st"):
        assert s not in line
    assert "wk_" not in redact("key wk_0123abcd_ZZZZZZZZZZZZ").replace("[redacted]", "")


def test_the_filter_rewrites_records_including_args_and_tracebacks():
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "token=%s", ("hunter2hunter2",), None)
    RedactingFilter().filter(rec)
    assert "hunter2hunter2" not in rec.getMessage()
