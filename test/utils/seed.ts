/**
 * The seed of a property test: `process.env[variable]` when set (to replay a failure), else a
 * random one. Put it in the test's name, so that a failure prints it.
 */
export function propertySeed(variable: string): number {
  const given = process.env[variable];
  return given ? Number(given) : Math.floor(Math.random() * 2 ** 31);
}
