//! heavyread reader (in progress).
