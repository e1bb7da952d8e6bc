import { Controller, Get, Header } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { clientBundle } from './client-bundle';

const page = readFileSync(join(__dirname, 'index.html'), 'utf8');

/** Serves the example page at `GET /`, and the client it uses at `GET /client.js`. */
@Controller()
export class PageController {
  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  index(): string {
    return page;
  }

  @Get('client.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  client(): Promise<string> {
    return clientBundle();
  }
}
