import type {
  Backplane,
  Publication,
  StreamPosition,
} from '../backplane/backplane';
import { describeError } from '../errors/describe-error';
import { SafeLogger } from '../errors/safe-logger';
import { GROUP_HISTORY_RESET, GROUP_MESSAGES_LOST } from '../messages';

/** ms between two checks of where each group stands, which find what pub/sub dropped. */
export const POSITION_CHECK = 5000;

interface Cursor {
  /** The last publication handed on, once one came. */
  position?: StreamPosition;
  /** What came while the gap before it is filled from the history. */
  waiting?: Publication[];
}

const logger = new SafeLogger('GroupCursors');

/**
 * Hands on the publications of each subscribed group in the order of their offsets, once each,
 * on a backplane that can drop some (pub/sub does while a connection is down): a gap is filled
 * from the group's history before what follows it goes on, and a periodic check of each group's
 * position finds the publications that never came. What the history no longer has is reported
 * as lost.
 */
export class GroupCursors {
  private readonly cursors = new Map<string, Cursor>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly backplane: Backplane,
    private readonly deliver: (publication: Publication) => void,
    /** The group's publications before `position` are lost to this instance. */
    private readonly lost: (group: string, position: StreamPosition) => void,
  ) {}

  /**
   * Follows `group` from where it stands now; resolves once that is known (or the broker did not
   * say). Subscribe after that: whatever is published from there on then either comes or is
   * found, however late the subscription's first message arrives.
   */
  open(group: string): Promise<void> {
    const cursor: Cursor = {};
    this.cursors.set(group, cursor);
    this.timer ??= setInterval(() => this.check(), POSITION_CHECK).unref();
    return this.backplane.position(group).then(
      (position) => {
        if (!cursor.position && !cursor.waiting) cursor.position = position;
      },
      () => undefined, // the broker is away: the next check sets it
    );
  }

  close(group: string): void {
    this.cursors.delete(group);
    if (this.cursors.size || !this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  dispose(): void {
    this.cursors.clear();
    clearInterval(this.timer);
    this.timer = undefined;
  }

  receive(group: string, publication: Publication): void {
    const cursor = this.cursors.get(group);
    if (!cursor) return;
    if (cursor.waiting) {
      cursor.waiting.push(publication);
      return;
    }
    const position = publication.position!;
    let last = cursor.position;
    if (last && last.epoch !== position.epoch) {
      // a new history: what it holds before this one is new to us too
      logger.warn(GROUP_HISTORY_RESET(group));
      cursor.position = last = { offset: 0, epoch: position.epoch };
    }
    if (!last || position.offset === last.offset + 1) {
      cursor.position = position;
      this.deliver(publication);
    } else if (position.offset > last.offset) {
      this.catchUp(group, cursor, [publication]);
    }
  }

  /** Fills the gap after the cursor from the history, then goes on with what waited. */
  private catchUp(
    group: string,
    cursor: Cursor,
    waiting: Publication[],
    top?: StreamPosition,
  ): void {
    cursor.waiting = waiting;
    const since = cursor.position!;
    this.backplane.history(group, since).then(
      (history) => {
        if (this.cursors.get(group) !== cursor) return;
        if (history) {
          for (const publication of history.publications) {
            const { offset } = publication.position!;
            if (offset !== cursor.position!.offset + 1) continue;
            cursor.position = publication.position;
            this.deliver(publication);
          }
        } else {
          logger.warn(GROUP_MESSAGES_LOST(group));
          const next = cursor.waiting![0]?.position;
          const from = next
            ? { offset: next.offset - 1, epoch: next.epoch }
            : top;
          cursor.position = from;
          if (from) this.lost(group, from);
        }
        this.resume(group, cursor);
      },
      (error: unknown) => {
        // the broker is away: what waited goes on; the next check tries again
        logger.warn(GROUP_MESSAGES_LOST(group, describeError(error)));
        if (this.cursors.get(group) === cursor) this.resume(group, cursor);
      },
    );
  }

  private resume(group: string, cursor: Cursor): void {
    const waiting = cursor.waiting!;
    cursor.waiting = undefined;
    for (const publication of waiting) this.receive(group, publication);
  }

  /** Asks where each group stands, and fills what did not come. */
  private check(): void {
    for (const [group, cursor] of this.cursors) {
      if (cursor.waiting) continue;
      this.backplane.position(group).then(
        (position) => {
          const last = cursor.position;
          if (this.cursors.get(group) !== cursor || cursor.waiting) return;
          // subscribed while the broker was away: it follows from here
          if (!last) {
            cursor.position = position;
            return;
          }
          const behind =
            position.epoch === last.epoch
              ? position.offset > last.offset
              : position.offset > 0;
          if (!behind) return;
          if (position.epoch !== last.epoch) {
            logger.warn(GROUP_HISTORY_RESET(group));
            cursor.position = { offset: 0, epoch: position.epoch };
          }
          this.catchUp(group, cursor, [], position);
        },
        () => undefined, // the broker is away; the next check asks again
      );
    }
  }
}
