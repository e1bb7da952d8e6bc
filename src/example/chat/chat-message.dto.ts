import { IsString, Length } from 'class-validator';

/** A message a chat member sends: `{"text": "…"}`, 1 to 500 characters. */
export class ChatMessageDto {
  @IsString()
  @Length(1, 500)
  text!: string;
}
