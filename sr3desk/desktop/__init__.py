"""sr3desk on the user's desktop, by the freedesktop.org specifications.

- :mod:`.entry`: the application entry and its icon in the applications menu;
- :mod:`.autostart`: background indexing, an autostart entry that runs
  ``sr3desk watch --background`` at login, and starting or stopping that watcher;
- :mod:`.priority`: how the background watcher lowers its CPU and I/O priority.

Everything is installed for the user alone (no root), under ``$XDG_DATA_HOME``
and ``$XDG_CONFIG_HOME``. Nothing here imports Qt at module level.
"""
