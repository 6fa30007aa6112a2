"""Integrations with training frameworks; each lives in its own module and imports only its
own framework, on first import of that module:

- ``metrana.integrations.gymnasium``: ``log_episode_statistics``, ``MetranaEpisodeStatistics``
- ``metrana.integrations.sb3``: ``MetranaCallback``, ``MetranaOutputFormat``
- ``metrana.integrations.transformers``: ``MetranaCallback``
- ``metrana.integrations.lightning``: ``MetranaLogger``

Importing ``metrana`` or this package imports none of the frameworks. Install them with
``pip install 'metrana[integrations]'`` (or bring your own versions).
"""
