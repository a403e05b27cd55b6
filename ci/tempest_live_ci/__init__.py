"""tempest-live-ci: functional testing of OpenStack packages in a Debian Live guest."""

__version__ = "0.1.0"
