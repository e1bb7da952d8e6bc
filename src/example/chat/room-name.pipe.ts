import { BadRequestException, Injectable, PipeTransform } from '@nestjs/common';

const ROOM_NAME = /^[a-z0-9-]{1,32}$/;

/**
 * Lets through a room name of 1 to 32 lower-case letters, digits and dashes; on the upgrade
 * request, anything else is refused with 400 before a socket exists.
 */
@Injectable()
export class RoomNamePipe implements PipeTransform<unknown, string> {
  transform(value: unknown): string {
    if (typeof value === 'string' && ROOM_NAME.test(value)) return value;
    throw new BadRequestException(
      'A room name is 1 to 32 characters: lower-case letters, digits and "-".',
    );
  }
}
