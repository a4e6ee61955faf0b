// `console` for the type-checks with `lib: ["es2022"]` alone, which has none (the DOM library
// and @types/node declare it). The package's own declarations need nothing of the kind.
declare var console: { log(...data: unknown[]): void };
