// Any promise rejection that nobody handles fails the spec file it happened in.
const unhandled: unknown[] = [];
const record = (reason: unknown) => unhandled.push(reason);

beforeAll(() => process.on('unhandledRejection', record));

afterAll(() => {
  process.off('unhandledRejection', record);
  expect(unhandled).toEqual([]);
});
