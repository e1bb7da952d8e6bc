import { Injectable } from '@nestjs/common';
import type { WebSocketContext } from '../context/websocket-context';

/** The groups of this instance's sessions: the members of each; a group with none is gone. */
@Injectable()
export class GroupRegistry {
  private readonly groups = new Map<string, Set<WebSocketContext>>();

  join(context: WebSocketContext, group: string): void {
    let members = this.groups.get(group);
    if (!members) this.groups.set(group, (members = new Set()));
    members.add(context);
  }

  leave(context: WebSocketContext, group: string): void {
    const members = this.groups.get(group);
    if (!members?.delete(context)) return;
    if (!members.size) this.groups.delete(group);
  }

  /** The sessions in `group`, none when there is no such group. */
  members(group: string): ReadonlySet<WebSocketContext> {
    return this.groups.get(group) ?? NONE;
  }

  /** The groups that have members. */
  names(): IterableIterator<string> {
    return this.groups.keys();
  }
}

const NONE: ReadonlySet<WebSocketContext> = new Set();
