//! heavyread benchmark tools (in progress).
