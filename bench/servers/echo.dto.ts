// What every validating server checks each JSON message against, with the same pipe.
import { ValidationPipe } from '@nestjs/common';
import { IsInt, IsString } from 'class-validator';

export class EchoDto {
  @IsInt()
  n!: number;

  @IsString()
  text!: string;
}

export const echoValidationPipe = () =>
  new ValidationPipe({ whitelist: true, transform: true });
