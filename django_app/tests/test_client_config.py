"""The client's configuration is built from settings once per process, not on every request."""

from __future__ import annotations

from calculator_web import serving


def test_config_is_built_once_and_reused():
    first = serving.client_config()
    assert serving.client_config() is first


def test_a_changed_tfsp_setting_rebuilds_the_config(settings):
    before = serving.client_config()
    settings.TFSP_TF_SERVING_TARGETS = ["127.0.0.1:18500", "127.0.0.1:18501"]
    after = serving.client_config()
    assert after is not before
    assert after.targets == ("127.0.0.1:18500", "127.0.0.1:18501")


def test_other_settings_keep_the_config(settings):
    before = serving.client_config()
    settings.DEBUG = not settings.DEBUG
    assert serving.client_config() is before
