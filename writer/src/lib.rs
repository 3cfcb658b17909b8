//! heavyread writer (in progress).
