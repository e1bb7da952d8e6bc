import fc from 'fast-check';
import type { Publication } from './backplane';
import { decodeMessage, encodeBody } from './publication-codec';

const SELF = 'instance-a';

/** A message as the group's publish script makes it: `<offset> <epoch> ` then the body. */
function sequenced(offset: number, epoch: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${offset} ${epoch} `), body]);
}

describe('publication codec', () => {
  it('carries a publication through the broker as it was, with its place in the stream', () => {
    fc.assert(
      fc.property(
        fc.record({
          groups: fc.option(
            fc.array(fc.string({ minLength: 1 }), { minLength: 1 }),
            { nil: undefined },
          ),
          user: fc.option(fc.string(), { nil: undefined }),
          except: fc.option(fc.array(fc.string(), { minLength: 1 }), {
            nil: undefined,
          }),
          text: fc.string({ unit: 'binary' }),
          binary: fc.boolean(),
        }),
        fc.nat(),
        ({ groups, user, except, text, binary }, offset) => {
          const payload = binary ? Buffer.from(text) : text;
          const publication: Publication = {
            groups,
            user,
            except,
            payload,
            binary,
          };
          const body = encodeBody(publication, 'instance-b', false);
          const decoded = decodeMessage(
            sequenced(offset + 1, 'E1', body),
            SELF,
          )!;
          expect(decoded.payload).toEqual(payload);
          expect(decoded.binary).toBe(binary);
          expect(decoded.groups).toEqual(groups);
          expect(decoded.user).toEqual(user);
          expect(decoded.except).toEqual(except);
          expect(decoded.position).toEqual({ offset: offset + 1, epoch: 'E1' });
          expect(decoded.delivered).toBeUndefined();
        },
      ),
    );
  });

  it('marks what this instance held and delivered itself, and only that', () => {
    const publication: Publication = {
      groups: ['g'],
      payload: 'x',
      binary: false,
    };
    const own = encodeBody(publication, SELF, true);
    const theirs = encodeBody(publication, 'instance-b', true);
    expect(decodeMessage(sequenced(1, 'E', own), SELF)!.delivered).toBe(true);
    expect(
      decodeMessage(sequenced(1, 'E', theirs), SELF)!.delivered,
    ).toBeUndefined();
  });

  it('ignores what another program put on the channel, whatever it is', () => {
    for (const garbage of [
      '',
      ' ',
      '1 E',
      '1 E {"o":1}\nx',
      '1 E null\n',
      '1 E [1]\n',
      'x y {\n',
    ]) {
      expect(decodeMessage(Buffer.from(garbage), SELF)).toBeUndefined();
    }
    fc.assert(
      fc.property(fc.uint8Array(), (bytes) => {
        const decoded = decodeMessage(Buffer.from(bytes), SELF);
        if (decoded) expect(typeof decoded.binary).toBe('boolean');
      }),
    );
  });
});
