import {
  BadRequestException,
  ForbiddenException,
  HttpServer,
  RequestMethod,
  Type,
} from '@nestjs/common';
import { ApplicationConfig, ModuleRef } from '@nestjs/core';
import type { NestContainer } from '@nestjs/core/injector/container';
import {
  ExecutionContextHost,
  GuardsConsumer,
  GuardsContextCreator,
  InterceptorsConsumer,
  InterceptorsContextCreator,
  PipesConsumer,
  PipesContextCreator,
} from '@nestjs/core/internal';
import { RouteParamsFactory } from '@nestjs/core/router/route-params-factory';
import { RouterExceptionFilters } from '@nestjs/core/router/router-exception-filters';
import { WebSocketServer } from 'ws';
import { SafeLogger } from '../errors/safe-logger';
import {
  MessageParser,
  UpgradeRequest,
  WebSocketContext,
} from '../context/websocket-context';
import { WsEndpointDefinition } from '../discovery/ws-endpoint-explorer';
import type { ResolvedWsEndpointOptions } from '../interfaces/ws-endpoint-options.interface';
import { INVALID_JSON, ORIGIN_REFUSED, UNANSWERED_UPGRADE } from '../messages';
import { SessionEndpoint, SessionRunner } from '../session/session-runner';
import { HeartbeatMonitor } from '../transport/heartbeat';
import { HandshakeFailure } from './handshake-failure';
import { containerOf, filtersOf } from './nest-internals';
import { originPolicy } from './origin-policy';
import { PendingUpgrade } from './pending-upgrade';
import { handlerArguments, WsExecutionContext } from './ws-execution-context';

/** An HTTP route handler, as the HTTP adapter registers it. */
export type RouteHandler = (
  request: UpgradeRequest,
  response: unknown,
  next?: Function,
) => void;

/**
 * Builds, once per endpoint, the HTTP route that an upgrade request is routed to: the origin
 * policy of this endpoint (the one the platform chose to run), then Nest's guards, interceptors
 * and param pipes; exceptions before the upgrade go through the app's HTTP exception filters,
 * and the handler call completes the handshake and runs the session.
 */
export class WsRouteFactory {
  private readonly logger = new SafeLogger(WsRouteFactory.name);
  private readonly container: NestContainer;
  private readonly pipes: PipesContextCreator;
  private readonly interceptors: InterceptorsContextCreator;
  private readonly pipesConsumer = new PipesConsumer();
  private readonly executionContext: WsExecutionContext;
  private readonly exceptionFilters: RouterExceptionFilters;

  constructor(
    moduleRef: ModuleRef,
    config: ApplicationConfig,
    private readonly adapter: HttpServer,
    private readonly runner: SessionRunner,
  ) {
    // ExternalContextCreator looks for the host among providers and so drops class-referenced
    // guards and pipes of controllers; the context creators are composed with the controller's own module instead.
    this.container = containerOf(moduleRef);
    this.pipes = new PipesContextCreator(this.container, config);
    this.interceptors = new InterceptorsContextCreator(this.container, config);
    this.executionContext = new WsExecutionContext(
      new RouteParamsFactory(config),
      this.pipes,
      this.pipesConsumer,
      new GuardsContextCreator(this.container, config),
      new GuardsConsumer(),
      this.interceptors,
      new InterceptorsConsumer(),
      adapter,
    );
    this.exceptionFilters = new RouterExceptionFilters(
      this.container,
      config,
      adapter,
    );
  }

  create(definition: WsEndpointDefinition): RouteHandler {
    const { instance, method, methodName, moduleKey } = definition;
    const { heartbeat } = definition.options;
    const endpoint: SessionEndpoint = {
      definition,
      server: createServer(definition.options),
      settings: this.runner.contextSettings(
        definition,
        this.createParser(definition),
        heartbeat ? new HeartbeatMonitor(heartbeat) : undefined,
      ),
    };
    const runner = this.runner;
    // Nest calls this in place of the method once guards and param pipes have passed. With
    // interceptors, it lasts as long as the session, so that they wrap it; without, it returns
    // once the handshake is done, and Nest lets go of the request's pipeline state (the request,
    // the response, its closures) instead of holding it for the life of the connection.
    const detached =
      this.interceptors.create(instance, method, moduleKey).length === 0;
    const callback = function (this: object, ...params: unknown[]) {
      const [args, upgrade] = handlerArguments(params);
      return runner.run(
        endpoint,
        upgrade,
        this,
        args,
        detached ? failSession : undefined,
      );
    };
    // guards and interceptors see it as the handler: give it the method's name and metadata
    Object.defineProperty(callback, 'name', { value: methodName });
    for (const key of Reflect.getMetadataKeys(method)) {
      Reflect.defineMetadata(key, Reflect.getMetadata(key, method), callback);
    }
    const execute = this.executionContext.create(
      instance,
      callback,
      methodName,
      moduleKey,
      RequestMethod.GET,
    );
    const exceptions = this.exceptionFilters.create(
      instance,
      callback,
      moduleKey,
    );
    // the filters of the route as the app bound them, for errors after the upgrade, where they
    // see a 'ws' host; the HTTP answers go through guarded copies
    const filters = filtersOf(exceptions);
    const refusals = new HandshakeFailure(exceptions, this.adapter);
    const failSession = (context: WebSocketContext, error: unknown) => {
      const host = new ExecutionContextHost(
        [context, undefined],
        instance.constructor as Type,
        callback,
      );
      host.setType('ws');
      return this.runner.fail(definition, context, error, filters, host);
    };
    const allowedOrigin = originPolicy(definition.options.allowedOrigins);

    const route = async (
      request: UpgradeRequest,
      response: unknown,
      next?: Function,
    ) => {
      const upgrade = PendingUpgrade.of(request);
      if (!upgrade) return refusals.upgradeRequired(request, response, next);
      try {
        upgrade.routed = request;
        const refusal = allowedOrigin(upgrade.request);
        this.checkOrigin(
          upgrade,
          typeof refusal === 'object' ? await refusal : refusal,
        );
        await execute(request, response, next as Function);
        if (!detached) this.interceptorsDone(upgrade, definition.name);
      } catch (error) {
        if (upgrade.context) await failSession(upgrade.context, error);
        else refusals.refuse(upgrade, error, request, response, next);
      } finally {
        upgrade.release();
      }
    };
    // Nothing is returned to the platform: Fastify would answer a settled handler with an HTTP
    // response. The route cannot reject: its failure paths are total.
    return (request, response, next) => void route(request, response, next);
  }

  /** Refuses (403) an `Origin` the endpoint's `allowedOrigins` refused, logged once. */
  private checkOrigin(upgrade: PendingUpgrade, refusal?: string): void {
    if (!refusal) return;
    const { origin = '' } = upgrade.request.headers;
    this.logger.warn(
      ORIGIN_REFUSED(origin, upgrade.request.url ?? '/', refusal),
    );
    throw new ForbiddenException('Origin not allowed');
  }

  /**
   * The interceptors' Observable has settled: the session ends with it. One that completed
   * without calling `next.handle()` leaves the upgrade unanswered (500); one that completed
   * early, or swallowed the handler's error, leaves an open socket that no handler serves.
   */
  private interceptorsDone(upgrade: PendingUpgrade, endpoint: string): void {
    const { context } = upgrade;
    if (!context) {
      if (!upgrade.routing) return;
      this.logger.error(UNANSWERED_UPGRADE(endpoint));
      upgrade.abandon(500, 'Internal server error');
    } else if (context.state === 'open') {
      void context.close();
    }
  }

  private createParser({
    instance,
    method,
    moduleKey,
  }: WsEndpointDefinition): MessageParser {
    const pipes = this.pipes.create(instance, method, moduleKey);
    return (message, metatype) => {
      let value: unknown;
      try {
        value = message.json();
      } catch {
        return Promise.reject(new BadRequestException(INVALID_JSON));
      }
      return this.pipesConsumer.applyPipes(
        value,
        { type: 'body', metatype, data: undefined },
        pipes,
      );
    };
  }
}

/** The `ws` server that completes an endpoint's handshakes. */
function createServer(options: ResolvedWsEndpointOptions): WebSocketServer {
  const {
    maxPayload,
    maxFragments,
    closeTimeout,
    perMessageDeflate,
    protocols,
  } = options;
  return new WebSocketServer({
    // @types/ws does not know closeTimeout (ws ≥ 8.19) yet
    ...({ closeTimeout } as object),
    noServer: true,
    clientTracking: false,
    maxPayload,
    maxFragments,
    perMessageDeflate,
    // the first protocol the endpoint prefers among those offered; never one it does not speak
    handleProtocols: (offered) =>
      protocols.find((protocol) => offered.has(protocol)) ?? false,
  });
}
