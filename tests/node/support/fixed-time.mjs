// Preloaded (`node --import`) by readme.test.mjs: `Date.now()`, the tracker's clock, fixed in
// the middle of a minute, so that no window ends while a README snippet runs and its printed
// counts are always the same.
const NOW = Date.UTC(2024, 1, 29, 13, 45, 17, 250);
Date.now = () => NOW;
